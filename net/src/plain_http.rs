//! A client that sends plain HTTP to a port that speaks HTTPS gets a plain
//! HTTP 400 carrying the error envelope that says so, rather than a
//! connection closed without a word.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use upkeep_common::{ErrorBody, ErrorCode};

use crate::response;

/// How many first bytes tell a request line from a TLS record: the longest
/// method upkeep's routes or a client would send (`OPTIONS`) and a space.
pub const FIRST_BYTES: usize = 8;

/// How long the refused request is read (and dropped) after the answer, so
/// that closing with unread bytes does not reset the connection before the
/// client reads the answer.
const LINGER: Duration = Duration::from_secs(1);

/// The most bytes of the refused request read after the answer.
const LINGER_BYTES: usize = 64 * 1024;

/// Whether a connection's first bytes start a plain HTTP request line (a
/// method in capitals, then a space) rather than a TLS record, which starts
/// with the byte 0x16.
pub fn is_plain_http(first: &[u8]) -> bool {
    let method = first.iter().take_while(|byte| byte.is_ascii_uppercase()).count();
    method >= 3 && first.get(method) == Some(&b' ')
}

/// The whole answer to a plain HTTP request: a 400 with the envelope.
pub fn refusal() -> Vec<u8> {
    let body = ErrorBody::new(
        ErrorCode::MalformedRequest,
        "this port speaks HTTPS with mutual TLS; the request came as plain HTTP",
    );
    response::closing_error_text("HTTP/1.1 400 Bad Request", None, &body)
}

/// Answers a plain HTTP request with [`refusal`] and closes the connection.
pub async fn refuse(mut tcp: TcpStream) {
    if tcp.write_all(&refusal()).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    let mut unread = [0u8; 4096];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match tcp.read(&mut unread).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_told_from_tls_records() {
        for plain in ["GET /v1/node HTTP/1.1", "POST /", "OPTIONS *", "PATCH /x", "DELETE /"] {
            assert!(is_plain_http(&plain.as_bytes()[..plain.len().min(FIRST_BYTES)]), "{plain}");
        }
        let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01];
        for other in [&client_hello[..], b"GE", b"get /", b"GET", b"\x00\x00", b"", b"AB /"] {
            assert!(!is_plain_http(other), "{other:?}");
        }
    }

    #[test]
    fn the_refusal_is_a_whole_answer_with_the_envelope() {
        let answer = String::from_utf8(refusal()).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let envelope: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(envelope["error"]["code"], "malformed_request");
        assert!(envelope["error"]["message"].as_str().is_some_and(|m| m.contains("HTTPS")));
    }
}
