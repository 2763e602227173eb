//! The scripted agent's misbehaviours below HTTP: a request head read as raw
//! bytes, answers that never come or never end, and a writer that lets one
//! byte through per second. Every buffer here has a fixed size.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use hyper::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::Counters;
use super::script::Route;

/// The longest request head read as raw bytes; the rest is not looked at.
const MAX_HEAD: usize = 16 * 1024;
/// The zeros written per write by the streaming answers.
const CHUNK: usize = 64 * 1024;
/// The length [`huge_body`] declares and sends.
pub const HUGE_BODY_BYTES: u64 = 200_000_000;

/// Reads one request head (up to the blank line, at most [`MAX_HEAD`] bytes)
/// and counts it. `None` when the connection ended before a whole head.
pub(super) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, counters: &Counters) -> Option<Route> {
    let mut head = Vec::with_capacity(1024);
    let mut piece = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            break;
        }
        let read = stream.read(&mut piece).await.ok().filter(|&read| read > 0)?;
        head.extend_from_slice(&piece[..read.min(MAX_HEAD - head.len())]);
    }
    let line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
    let mut words = std::str::from_utf8(line).unwrap_or_default().split(' ');
    let method = Method::from_bytes(words.next().unwrap_or_default().as_bytes()).unwrap_or(Method::OPTIONS);
    let route = Route::of(&method, words.next().unwrap_or_default());
    counters.requests.fetch_add(1, Ordering::Relaxed);
    if route == Route::Upgrade {
        counters.upgrade_requests.fetch_add(1, Ordering::Relaxed);
    }
    Some(route)
}

/// Reads and drops whatever the peer sends until it closes the connection:
/// the connection stays open and nothing is ever written.
pub(super) async fn discard_until_closed<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink).await, Ok(read) if read > 0) {}
}

/// `200 OK` declaring [`HUGE_BODY_BYTES`] of body, then that many zeros.
pub(super) async fn huge_body<S: AsyncWrite + Unpin>(stream: &mut S, counters: &Counters) {
    let head =
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {HUGE_BODY_BYTES}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_ok() {
        stream_zeros(stream, counters, Some(HUGE_BODY_BYTES)).await;
    }
}

/// `200 OK` without a length and with `connection: close`, then zeros until
/// the peer goes away.
pub(super) async fn endless_body<S: AsyncWrite + Unpin>(stream: &mut S, counters: &Counters) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
    if stream.write_all(head.as_bytes()).await.is_ok() {
        stream_zeros(stream, counters, None).await;
    }
}

/// Writes `limit` zeros (or zeros for ever), counting them, until a write fails.
async fn stream_zeros<S: AsyncWrite + Unpin>(stream: &mut S, counters: &Counters, limit: Option<u64>) {
    let chunk = [b'0'; CHUNK];
    let mut left = limit.unwrap_or(u64::MAX);
    while left > 0 {
        let length = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        if stream.write_all(&chunk[..length]).await.is_err() {
            return;
        }
        counters.bytes_streamed.fetch_add(length, Ordering::Relaxed);
        if limit.is_some() {
            left -= length as u64;
        }
    }
    let _ = stream.flush().await;
}

/// A stream whose writes let one byte through per second (the first at once),
/// counting them; reads pass through.
pub(super) struct OneBytePerSecond<S> {
    inner: S,
    next: Pin<Box<Sleep>>,
    counters: Arc<Counters>,
}

impl<S> OneBytePerSecond<S> {
    /// Wraps `inner`.
    pub(super) fn new(inner: S, counters: Arc<Counters>) -> Self {
        Self { inner, next: Box::pin(tokio::time::sleep_until(Instant::now())), counters }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for OneBytePerSecond<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for OneBytePerSecond<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        // The byte before this one goes out before the wait for the next.
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        ready!(this.next.as_mut().poll(cx));
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..1]))?;
        this.counters.bytes_streamed.fetch_add(written, Ordering::Relaxed);
        this.next.as_mut().reset(Instant::now() + Duration::from_secs(1));
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
