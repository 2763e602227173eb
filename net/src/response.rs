//! Building responses: JSON bodies, the error envelope with its code's status,
//! plain text, and bodies streamed from a channel.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;
use upkeep_common::{ErrorBody, ErrorCode};

/// The body type of every response: whole, or streamed.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

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
    with_body(status, "application/json", envelope(body))
}

/// The whole text of an answer carrying the error envelope that closes the
/// connection, for the places below hyper that write an answer themselves:
/// `status_line` such as `HTTP/1.1 400 Bad Request`, and a `date` when one is kept.
pub fn closing_error_text(status_line: &str, date: Option<&str>, body: &ErrorBody) -> Vec<u8> {
    let body = envelope(body);
    let mut head = format!(
        "{status_line}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(date) = date {
        head.push_str(&format!("date: {date}\r\n"));
    }
    head.push_str("\r\n");
    let mut text = head.into_bytes();
    text.extend_from_slice(&body);
    text
}

/// The envelope as JSON.
fn envelope(body: &ErrorBody) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"","details":[]}}"#.to_vec())
}

/// A response with a body of the given content type.
pub fn with_body(status: StatusCode, content_type: &'static str, bytes: impl Into<Bytes>) -> Response<Body> {
    with_content(status, content_type, Full::new(bytes.into()).boxed_unsync())
}

/// A response whose body is every chunk `chunks` yields, ending when its
/// sender is dropped (or the connection closes, which drops the receiver).
pub fn streamed(status: StatusCode, content_type: &'static str, chunks: mpsc::Receiver<Bytes>) -> Response<Body> {
    let frames = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (Ok::<_, Infallible>(Frame::data(chunk)), chunks))
    });
    with_content(status, content_type, StreamBody::new(frames).boxed_unsync())
}

fn with_content(status: StatusCode, content_type: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
