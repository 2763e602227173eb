//! hyper answers a request it cannot parse (a bad request line or header, a
//! target or a head too large) by itself, with a status and no body, before
//! any handler sees it. This stream wrapper rewrites each such answer into
//! the error envelope every other answer carries, keeping its status.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use upkeep_common::{ErrorBody, ErrorCode};

use crate::response;

/// How far from the end of a write hyper's answer can start: its status line
/// and its three headers (`connection`, `content-length`, `date`).
const LONGEST_AUTOMATIC_ANSWER: usize = 160;

/// A stream whose writes of hyper's own bodiless answers to unparseable
/// requests go out as the error envelope instead.
pub struct EnvelopedParseErrors<T> {
    inner: T,
    /// The rewritten bytes still to be written, and how many of them have been.
    rewritten: Option<(Vec<u8>, usize)>,
}

impl<T> EnvelopedParseErrors<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self { inner, rewritten: None }
    }
}

impl<T: AsyncWrite + Unpin> EnvelopedParseErrors<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = self.rewritten.as_mut() {
            if *written == bytes.len() {
                self.rewritten = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EnvelopedParseErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EnvelopedParseErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.poll_rewritten(cx)?.is_pending() {
            return Poll::Pending;
        }
        if let Some(rewritten) = with_envelope(data) {
            // Taken whole: the answer is the last thing hyper writes, and the
            // rest goes out on the flush or shutdown that follows it.
            this.rewritten = Some((rewritten, 0));
            let _ = this.poll_rewritten(cx)?;
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.poll_rewritten(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.poll_rewritten(cx)?.is_pending() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// `data` with hyper's automatic answer at its end rewritten into the error
/// envelope, or `None` when `data` does not end with one. Such an answer is an
/// HTTP/1.1 (or 1.0) 400, 414 or 431 status line followed only by `connection`,
/// `content-length: 0` and `date`; every answer of upkeep's own names its
/// content type.
fn with_envelope(data: &[u8]) -> Option<Vec<u8>> {
    if !data.ends_with(b"\r\n\r\n") {
        return None;
    }
    let tail_start = data.len().saturating_sub(LONGEST_AUTOMATIC_ANSWER);
    // HTTP/1.0 once the connection has carried an HTTP/1.0 request.
    let start = tail_start
        + find_last(&data[tail_start..], b"HTTP/1.1 ").or_else(|| find_last(&data[tail_start..], b"HTTP/1.0 "))?;
    let head = std::str::from_utf8(&data[start..data.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let (code, message) = match status_line.get(9..12)? {
        "400" => (ErrorCode::MalformedRequest, "the request line or a header field could not be parsed as HTTP/1.1"),
        "414" => (ErrorCode::UriTooLong, "the request target is longer than this server reads"),
        "431" => (ErrorCode::HeadersTooLarge, "the request has too many header fields, or they are too large"),
        _ => return None,
    };
    let mut date = None;
    let mut bodiless = false;
    for line in lines {
        let (name, value) = line.split_once(": ")?;
        match name.to_ascii_lowercase().as_str() {
            "connection" => {}
            "content-length" if value == "0" => bodiless = true,
            "date" => date = Some(value),
            _ => return None,
        }
    }
    if !bodiless {
        return None;
    }
    let mut rewritten = data[..start].to_vec();
    rewritten.extend(response::closing_error_text(status_line, date, &ErrorBody::new(code, message)));
    Some(rewritten)
}

/// Where `needle` last starts in `haystack`.
fn find_last(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Tue, 01 Dec 2026 19:08:33 GMT";

    fn automatic(status: &str) -> String {
        format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n")
    }

    fn envelope_of(rewritten: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(rewritten.to_vec()).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length: "))
            .and_then(|value| value.parse().ok())
            .expect("a content length");
        assert_eq!(length, body.len(), "{text}");
        (head.to_owned(), serde_json::from_str(body).expect("JSON"))
    }

    #[test]
    fn each_automatic_answer_becomes_the_envelope_with_its_status() {
        for (status, code) in [
            ("400 Bad Request", "malformed_request"),
            ("414 URI Too Long", "uri_too_long"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
        ] {
            let rewritten = with_envelope(automatic(status).as_bytes()).expect("rewritten");
            let (head, envelope) = envelope_of(&rewritten);
            assert!(head.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{head}");
            assert!(head.contains("\r\ncontent-type: application/json\r\n"), "{head}");
            assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
            assert!(head.ends_with(&format!("\r\ndate: {DATE}")), "{head}");
            assert_eq!(envelope["error"]["code"], code);
            assert!(envelope["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
            assert_eq!(envelope["error"]["details"], serde_json::json!([]));
        }
    }

    #[test]
    fn an_answer_on_an_http_1_0_connection_is_rewritten_too() {
        let answer = automatic("400 Bad Request").replace("HTTP/1.1 ", "HTTP/1.0 ");
        let rewritten = with_envelope(answer.as_bytes()).expect("rewritten");
        let (head, envelope) = envelope_of(&rewritten);
        assert!(head.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{head}");
        assert_eq!(envelope["error"]["code"], "malformed_request");
    }

    #[test]
    fn an_answer_still_unwritten_before_it_is_kept() {
        let earlier = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        let data = format!("{earlier}{}", automatic("400 Bad Request"));
        let rewritten = with_envelope(data.as_bytes()).expect("rewritten");
        assert!(rewritten.starts_with(earlier.as_bytes()));
        let (_, envelope) = envelope_of(&rewritten[earlier.len()..]);
        assert_eq!(envelope["error"]["code"], "malformed_request");
    }

    #[test]
    fn upkeeps_own_answers_pass_untouched() {
        let own = [
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
                .to_owned(),
            "HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_owned(),
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 12\r\n\r\n".to_owned(),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned(),
            format!("{{\"note\": \"{}\"}}", automatic("400 Bad Request").replace("\r\n\r\n", "")),
            "no answer at all".to_owned(),
        ];
        for data in own {
            assert!(with_envelope(data.as_bytes()).is_none(), "{data:?}");
        }
    }
}
