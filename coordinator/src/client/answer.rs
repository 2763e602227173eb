//! Reading answers: a body within its size limit, JSON into the expected type,
//! and the error envelope, whose code is kept as text.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde::Serialize;
use serde::de::DeserializeOwned;
use upkeep_common::ErrorDetail;

use super::ClientError;

/// Reads a whole answer's body, at most `limit` bytes of it.
pub(crate) async fn read_limited(address: &str, body: Incoming, limit: usize) -> Result<Bytes, ClientError> {
    let limited = http_body_util::Limited::new(body, limit);
    let collected =
        limited.collect().await.map_err(|error| match error.downcast_ref::<http_body_util::LengthLimitError>() {
            Some(_) => ClientError::TooLarge { address: address.to_owned(), limit },
            None => ClientError::Unreachable { address: address.to_owned(), reason: error.to_string() },
        })?;
    Ok(collected.to_bytes())
}

pub(super) fn to_body<T: Serialize>(value: &T) -> Result<Bytes, ClientError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| ClientError::Request { address: String::new(), reason: e.to_string() })
}

/// The envelope as read by the coordinator: the code is kept as text, so a
/// code this coordinator does not know still carries the agent's message.
#[derive(serde::Deserialize)]
struct AnsweredError {
    error: AnsweredErrorObject,
}

#[derive(serde::Deserialize)]
struct AnsweredErrorObject {
    code: String,
    message: String,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

pub(crate) fn decode<T: DeserializeOwned>(address: &str, status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
    let decode_error =
        |reason: String| ClientError::Decode { address: address.to_owned(), status: status.as_u16(), reason };
    if status.is_success() {
        return serde_json::from_slice(bytes).map_err(|e| decode_error(e.to_string()));
    }
    let envelope: AnsweredError = serde_json::from_slice(bytes).map_err(|e| decode_error(e.to_string()))?;
    Err(ClientError::Api {
        address: address.to_owned(),
        status: status.as_u16(),
        code: cut(&envelope.error.code, 64),
        message: cut(&envelope.error.message, 1000),
        details: envelope.error.details,
    })
}

/// At most `limit` characters of an agent's text (it ends up in reports and journals).
fn cut(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}
