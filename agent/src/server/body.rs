//! Reading a request's JSON body within the size limit, with every failure
//! mapped to the envelope: 413 too large, 415 not JSON, 400 unreadable JSON,
//! 422 a field of the wrong type or value (named in the details).

use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE};
use serde::de::DeserializeOwned;
use upkeep_common::{ErrorBody, ErrorCode, ErrorDetail};

/// Reads and parses the body; an empty body parses as `{}`.
pub async fn read_json<T: DeserializeOwned>(request: Request<Incoming>, limit: usize) -> Result<T, ErrorBody> {
    let too_large = || ErrorBody::new(ErrorCode::PayloadTooLarge, format!("request body is larger than {limit} bytes"));
    let declared_length =
        request.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let content_type = request.headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap_or("").to_owned());
    let bytes = match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(error) => {
            return Err(ErrorBody::new(
                ErrorCode::MalformedRequest,
                format!("request body could not be read: {error}"),
            ));
        }
    };
    if bytes.is_empty() {
        return parse_json(b"{}");
    }
    let is_json = content_type.as_deref().is_some_and(|value| {
        value.split(';').next().is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
    });
    if !is_json {
        return Err(ErrorBody::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "request body must be application/json, got {}",
                content_type.as_deref().unwrap_or("no Content-Type")
            ),
        ));
    }
    parse_json(&bytes)
}

/// Parses JSON, naming the field that failed.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ErrorBody> {
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
            _ => ErrorBody::new(ErrorCode::MalformedRequest, format!("request body is not valid JSON: {inner}")),
        }
    })?;
    deserializer.end().map_err(|error| {
        ErrorBody::new(ErrorCode::MalformedRequest, format!("request body is not valid JSON: {error}"))
    })?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use upkeep_common::api::UpgradeRequest;

    #[test]
    fn syntax_errors_are_malformed_and_field_errors_are_named() {
        let malformed = parse_json::<UpgradeRequest>(b"{\"target_version\": ").expect_err("truncated");
        assert_eq!(malformed.error.code, ErrorCode::MalformedRequest);
        let invalid = parse_json::<UpgradeRequest>(br#"{"target_version": "one.two", "artifacts": []}"#)
            .expect_err("bad version");
        assert_eq!(invalid.error.code, ErrorCode::ValidationFailed);
        assert_eq!(invalid.error.details[0].field, "target_version");
        let nested = parse_json::<UpgradeRequest>(
            br#"{"target_version": "v1.31.0", "artifacts": [{"component": "kubelet", "source": "file:///x", "sha256": "nope"}]}"#,
        )
        .expect_err("bad digest");
        assert_eq!(nested.error.details[0].field, "artifacts[0].sha256");
        let trailing =
            parse_json::<UpgradeRequest>(br#"{"target_version": "v1.31.0", "artifacts": []} x"#).expect_err("trailing");
        assert_eq!(trailing.error.code, ErrorCode::MalformedRequest);
    }

    #[test]
    fn missing_fields_are_validation_errors() {
        let missing = parse_json::<UpgradeRequest>(br#"{"artifacts": []}"#).expect_err("no target");
        assert_eq!(missing.error.code, ErrorCode::ValidationFailed);
        assert!(missing.error.details[0].message.contains("target_version"));
    }
}
