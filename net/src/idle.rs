//! A stream wrapper that remembers when bytes last moved, so a connection with
//! no traffic for the idle timeout can be closed; a connection whose request is
//! still being answered (a long poll waiting for a change) is not idle.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When a connection last saw traffic, shared between the stream and its watchdog.
#[derive(Debug, Clone)]
pub struct Activity {
    start: Instant,
    last_millis: Arc<AtomicU64>,
    answering: Arc<AtomicU64>,
}

impl Activity {
    /// Activity starting now.
    pub fn new() -> Self {
        Self { start: Instant::now(), last_millis: Arc::new(AtomicU64::new(0)), answering: Arc::default() }
    }

    /// Marks a request as being answered until the guard drops: meanwhile the
    /// connection is not idle, however long the answer takes to come.
    pub fn answering(&self) -> Answering {
        self.answering.fetch_add(1, Ordering::Relaxed);
        Answering { activity: self.clone() }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(millis, Ordering::Relaxed);
    }

    /// Time since bytes last moved, or zero while a request is being answered.
    pub fn idle_for(&self) -> Duration {
        if self.answering.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_millis.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// A request being answered; see [`Activity::answering`].
#[derive(Debug)]
pub struct Answering {
    activity: Activity,
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that touches its [`Activity`] on every successful read or write.
pub struct ActivityIo<T> {
    inner: T,
    activity: Activity,
}

impl<T> ActivityIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
