//! Request bodies: read within the size limit and in time, and parsed as one
//! JSON object. Both the body read timeout (for the whole body) and the idle
//! timeout (between two pieces of it) apply while a body is read, so a client
//! that sends headers and then stalls, with a `Content-Length` or chunked, is
//! cut off and its connection slot freed. Every failure is an envelope: 408 too
//! slow, 413 too large, 415 not JSON, 400 a missing required body or
//! unreadable JSON, 422 JSON that is not an object or a field of the wrong type
//! or value (named in the details).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::de::{DeserializeOwned, IgnoredAny};
use tokio::time::Instant;
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail};

/// How much of a body is read, and how long it may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body accepted, in bytes.
    pub max_bytes: usize,
    /// Time allowed for the whole body, from when the handler starts reading it.
    pub read_timeout: Duration,
    /// Time allowed between two pieces of the body.
    pub idle_timeout: Duration,
}

/// A request's body as a handler receives it: readable only through this
/// module, within the connection's limits.
#[derive(Debug)]
pub struct RequestBody {
    incoming: Incoming,
    limits: BodyLimits,
}

impl RequestBody {
    /// Wraps a body received under `limits`.
    pub fn new(incoming: Incoming, limits: BodyLimits) -> Self {
        Self { incoming, limits }
    }
}

/// Whether an endpoint needs a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPresence {
    /// A missing (empty) body is `malformed_request`.
    Required,
    /// A missing (empty) body reads as `{}`.
    Optional,
}

/// Reads the whole body within its limits.
pub async fn read_bytes(body: RequestBody) -> Result<Bytes, ErrorBody> {
    let RequestBody { mut incoming, limits } = body;
    let too_large = || {
        ErrorBody::new(ErrorCode::PayloadTooLarge, format!("request body is larger than {} bytes", limits.max_bytes))
    };
    let deadline = Instant::now() + limits.read_timeout;
    let mut collected = BytesMut::new();
    loop {
        let wait_until = deadline.min(Instant::now() + limits.idle_timeout);
        let frame = match tokio::time::timeout_at(wait_until, incoming.frame()).await {
            Err(_) => return Err(too_slow(limits, Instant::now() >= deadline)),
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                return Err(ErrorBody::new(
                    ErrorCode::MalformedRequest,
                    format!("request body could not be read: {error}"),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if collected.len().saturating_add(data.len()) > limits.max_bytes {
                return Err(too_large());
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

fn too_slow(limits: BodyLimits, whole_body: bool) -> ErrorBody {
    let message = if whole_body {
        format!("request body did not arrive within {} s", limits.read_timeout.as_secs_f64())
    } else {
        format!("request body stalled for {} s", limits.idle_timeout.as_secs_f64())
    };
    ErrorBody::new(ErrorCode::RequestTimeout, message)
}

/// Reads the body of `request` and parses it as the JSON object `T`.
pub async fn read_json<T: DeserializeOwned>(
    request: Request<RequestBody>,
    presence: BodyPresence,
) -> Result<T, ErrorBody> {
    read_json_as(request, presence, &["application/json"]).await
}

/// Like [`read_json`], for a body of one of `media_types` (such as
/// `application/merge-patch+json` beside `application/json`).
pub async fn read_json_as<T: DeserializeOwned>(
    request: Request<RequestBody>,
    presence: BodyPresence,
    media_types: &[&str],
) -> Result<T, ErrorBody> {
    let limits = request.body().limits;
    let declared_length =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limits.max_bytes as u64) {
        return Err(ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {} bytes", limits.max_bytes),
        ));
    }
    let content_type = request.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("").to_owned());
    let bytes = read_bytes(request.into_body()).await?;
    if bytes.is_empty() {
        return match presence {
            BodyPresence::Required => {
                Err(ErrorBody::new(ErrorCode::MalformedRequest, "this request needs a JSON body"))
            }
            BodyPresence::Optional => parse_object(b"{}"),
        };
    }
    let accepted = content_type.as_deref().is_some_and(|value| {
        value.split(';').next().is_some_and(|media| media_types.iter().any(|m| media.trim().eq_ignore_ascii_case(m)))
    });
    if !accepted {
        return Err(ErrorBody::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "request body must be {}, got {}",
                media_types.join(" or "),
                content_type.as_deref().unwrap_or("no Content-Type")
            ),
        ));
    }
    parse_object(&bytes)
}

/// Parses one JSON object, naming the field that failed. Anything but an
/// object at the top (an array, which serde would accept for a struct, a
/// string, a number) is refused.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
    let malformed = |error: serde_json::Error| {
        ErrorBody::new(ErrorCode::MalformedRequest, format!("request body is not valid JSON: {error}"))
    };
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<IgnoredAny>(bytes).map_err(malformed)?;
        return Err(ErrorBody::with_details(
            ErrorCode::ValidationFailed,
            "request body must be a JSON object",
            vec![ErrorDetail::new("", "invalid_type", "expected a JSON object")],
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = parsed.map_err(|error| {
        let field = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ErrorBody::with_details(
                ErrorCode::ValidationFailed,
                "request has an invalid field",
                vec![ErrorDetail::new(
                    if field == "." { String::new() } else { field },
                    "invalid_value",
                    inner.to_string(),
                )],
            ),
            _ => malformed(inner),
        }
    })?;
    deserializer.end().map_err(malformed)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Item {
        size: u32,
    }

    #[test]
    fn syntax_errors_are_malformed_and_field_errors_are_named() {
        let malformed = parse_object::<Probe>(b"{\"name\": ").expect_err("truncated");
        assert_eq!(malformed.error.code, ErrorCode::MalformedRequest);
        let invalid = parse_object::<Probe>(br#"{"name": 7}"#).expect_err("wrong type");
        assert_eq!(invalid.error.code, ErrorCode::ValidationFailed);
        assert_eq!(invalid.error.details[0].field, "name");
        let nested = parse_object::<Probe>(br#"{"name": "x", "items": [{"size": -1}]}"#).expect_err("bad item");
        assert_eq!(nested.error.details[0].field, "items[0].size");
        let trailing = parse_object::<Probe>(br#"{"name": "x"} x"#).expect_err("trailing");
        assert_eq!(trailing.error.code, ErrorCode::MalformedRequest);
        let missing = parse_object::<Probe>(br#"{}"#).expect_err("no name");
        assert_eq!(missing.error.code, ErrorCode::ValidationFailed);
        assert!(missing.error.details[0].message.contains("name"));
    }

    #[test]
    fn only_an_object_is_a_request() {
        assert!(parse_object::<Probe>(br#" {"name": "x"}"#).is_ok());
        for body in [&br#"["x"]"#[..], br#" ["x", []]"#, br#""x""#, b"7", b"null"] {
            let refused = parse_object::<Probe>(body).expect_err("not an object");
            assert_eq!(refused.error.code, ErrorCode::ValidationFailed, "{}", String::from_utf8_lossy(body));
            assert_eq!(refused.error.details[0].code, "invalid_type");
        }
        assert_eq!(parse_object::<Probe>(b"[1,").expect_err("broken").error.code, ErrorCode::MalformedRequest);
    }
}
