//! Building responses: JSON bodies, the error envelope with its code's status,
//! and plain text.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use upkeep_common::{ErrorBody, ErrorCode};

/// The body type of every response.
pub type Body = Full<Bytes>;

/// A response with a JSON body.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => with_body(status, "application/json", bytes),
        Err(cause) => {
            tracing::error!(%cause, "response did not serialize");
            error(&ErrorBody::new(ErrorCode::Internal, "response could not be encoded"))
        }
    }
}

/// A response carrying the error envelope with the code's status.
pub fn error(body: &ErrorBody) -> Response<Body> {
    let status = StatusCode::from_u16(body.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bytes = serde_json::to_vec(body)
        .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"","details":[]}}"#.to_vec());
    with_body(status, "application/json", bytes)
}

/// A response with a body of the given content type.
pub fn with_body(status: StatusCode, content_type: &'static str, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(bytes.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
