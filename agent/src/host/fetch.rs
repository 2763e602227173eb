//! Reading artifacts from `file://` and `https://` sources into a file, with a
//! size limit and the sha256 computed on the way. `https://` uses the configured
//! CA bundle, or the Mozilla roots when none is configured; redirects are not
//! followed (a source must name the artifact itself). `file://` sources are
//! read only inside the configured roots (see [`crate::host::file_source`]).
//!
//! Every wait is on the reactor, never on a blocking thread, so dropping a copy
//! (a cancel, a step timeout) releases everything at once: a `file://` source is
//! opened non-blocking (a FIFO without a writer is waited for, not blocked on;
//! other special files are refused), and the HTTPS connection is closed with
//! the copy.

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, StatusCode, Uri};
use rustls::ClientConfig;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use upkeep_common::ids::Sha256 as Sha256Digest;

use upkeep_net::client::server_authenticated_client;
use upkeep_net::tls::TlsError;

use crate::host::connection::{self, Connection};
use crate::host::file_source::{self, FileSourceError};
use crate::host::files::{FileError, Staged};

/// Reads artifact sources.
#[derive(Clone)]
pub struct ArtifactReader {
    tls: Arc<ClientConfig>,
    file_roots: Arc<[PathBuf]>,
}

/// Counts and hashes bytes on their way into the staging file, enforcing the limit.
struct Sink<'a, W> {
    file: &'a mut W,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl<W: AsyncWrite + Unpin> Sink<'_, W> {
    async fn write(&mut self, chunk: &[u8], path_hint: &str) -> Result<(), FileError> {
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(FileError::TooLarge { limit: self.limit });
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .await
            .map_err(|error| FileError::Io { path: path_hint.to_owned(), reason: error.to_string() })
    }

    fn finish(self) -> Staged {
        Staged { sha256: Sha256Digest::from_bytes(&self.hasher.finalize().into()), size: self.size }
    }
}

/// How often a FIFO source is looked at again while no writer has opened it.
const FIFO_WRITER_POLL: Duration = Duration::from_millis(50);

/// A `file://` source, opened without blocking.
enum SourceFile {
    /// A regular file.
    Regular(tokio::fs::File),
    /// A FIFO, read through the reactor.
    Fifo(tokio::net::unix::pipe::Receiver),
}

impl SourceFile {
    /// Opens `path` (resolved inside `roots`, no symlinks left) non-blocking:
    /// a FIFO with no writer opens at once instead of holding a thread until
    /// one comes. A symlink put in the path's place since is not followed, and
    /// what was opened is checked once more by its descriptor.
    async fn open(path: &Path, roots: &[PathBuf]) -> Result<SourceFile, FileSourceError> {
        let unresolvable = |error: std::io::Error| FileSourceError::Unresolvable(error.to_string());
        let owned = path.to_path_buf();
        let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_NOFOLLOW;
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new().read(true).custom_flags(flags.bits()).open(owned)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|opened| opened)
        .map_err(unresolvable)?;
        file_source::confirm_opened(roots, &file).await?;
        let kind = file.metadata().map_err(unresolvable)?.file_type();
        if kind.is_file() {
            Ok(SourceFile::Regular(tokio::fs::File::from_std(file)))
        } else if kind.is_fifo() {
            Ok(SourceFile::Fifo(tokio::net::unix::pipe::Receiver::from_file(file).map_err(unresolvable)?))
        } else {
            Err(FileSourceError::Unresolvable("not a regular file or a FIFO".to_owned()))
        }
    }

    /// Copies everything into `sink`. A FIFO reads as empty until a writer opens
    /// it, so its end is the first empty read after some data came.
    async fn copy_into<W: AsyncWrite + Unpin>(self, sink: &mut Sink<'_, W>, source: &str) -> Result<(), FileError> {
        let fetch_error = |e: std::io::Error| FileError::Fetch { source_url: source.to_owned(), reason: e.to_string() };
        let (mut input, waits_for_writer): (Box<dyn AsyncRead + Unpin + Send>, bool) = match self {
            SourceFile::Regular(file) => (Box::new(file), false),
            SourceFile::Fifo(pipe) => (Box::new(pipe), true),
        };
        let mut buffer = vec![0u8; 64 * 1024];
        let mut seen_data = false;
        loop {
            let read = input.read(&mut buffer).await.map_err(fetch_error)?;
            if read == 0 {
                if waits_for_writer && !seen_data {
                    tokio::time::sleep(FIFO_WRITER_POLL).await;
                    continue;
                }
                return Ok(());
            }
            seen_data = true;
            sink.write(&buffer[..read], source).await?;
        }
    }
}

impl ArtifactReader {
    /// A reader trusting `ca_bundle` for `https://`, or the Mozilla roots.
    pub fn new(ca_bundle: Option<&Path>) -> Result<Self, TlsError> {
        Ok(Self { tls: Arc::new(server_authenticated_client(ca_bundle)?), file_roots: Arc::from([]) })
    }

    /// The same reader, reading `file://` sources inside `roots` only (with no
    /// roots, which is the default, every `file://` source is refused).
    pub fn with_file_roots(self, roots: &[PathBuf]) -> Self {
        Self { file_roots: Arc::from(roots), ..self }
    }

    /// The `file://` source opened, when it is inside the file roots.
    async fn open_file_source(&self, source: &str) -> Result<SourceFile, FileError> {
        let refused = |error: FileSourceError| match error {
            FileSourceError::Unresolvable(reason) => FileError::Fetch { source_url: source.to_owned(), reason },
            refusal => FileError::Refused { source_url: source.to_owned(), reason: refusal.to_string() },
        };
        let path = file_source::resolve(&self.file_roots, source).await.map_err(refused)?;
        SourceFile::open(&path, &self.file_roots).await.map_err(refused)
    }

    /// Copies `source` into `file`; fails past `limit` bytes.
    pub async fn copy_to<W: AsyncWrite + Unpin>(
        &self,
        source: &str,
        file: &mut W,
        limit: u64,
    ) -> Result<Staged, FileError> {
        let mut sink = Sink { file, hasher: Sha256::new(), size: 0, limit };
        let fetch_error = |reason: String| FileError::Fetch { source_url: source.to_owned(), reason };
        if source.starts_with("file://") {
            let input = self.open_file_source(source).await?;
            input.copy_into(&mut sink, source).await?;
        } else if source.starts_with("https://") {
            self.copy_https(source, &mut sink).await?;
        } else {
            return Err(fetch_error("only file:// and https:// sources are supported".to_owned()));
        }
        sink.file.flush().await.map_err(|e| FileError::Io { path: source.to_owned(), reason: e.to_string() })?;
        Ok(sink.finish())
    }

    /// Whether `source` can be fetched, asked within `within`: a `file://` source
    /// inside the file roots opens as a regular file or FIFO; an `https://` server answers a HEAD with
    /// 2xx, or, when it refuses HEAD (405, 501), a GET of the first byte with 2xx.
    pub async fn probe(&self, source: &str, within: Duration) -> Result<(), FileError> {
        let fetch_error = |reason: String| FileError::Fetch { source_url: source.to_owned(), reason };
        let asked = async {
            if source.starts_with("file://") {
                return self.open_file_source(source).await.map(drop);
            }
            if !source.starts_with("https://") {
                return Err(fetch_error("only file:// and https:// sources are supported".to_owned()));
            }
            let (head, _connection) = self.request_https(source, Method::HEAD, None).await?;
            let status = head.status();
            if status.is_success() {
                return Ok(());
            }
            if !matches!(status, StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED) {
                return Err(fetch_error(format!("server answered {status} to HEAD")));
            }
            let (get, _connection) = self.request_https(source, Method::GET, Some("bytes=0-0")).await?;
            match get.status() {
                status if status.is_success() => Ok(()),
                status => Err(fetch_error(format!("server answered {status} to a ranged GET"))),
            }
        };
        match tokio::time::timeout(within, asked).await {
            Ok(result) => result,
            Err(_) => Err(fetch_error(format!("no answer within {within:?}"))),
        }
    }

    /// Sends one request for `source`; the connection closes when the returned
    /// guard is dropped.
    async fn request_https(
        &self,
        source: &str,
        method: Method,
        range: Option<&str>,
    ) -> Result<(hyper::Response<hyper::body::Incoming>, Connection), FileError> {
        let fetch_error = |reason: String| FileError::Fetch { source_url: source.to_owned(), reason };
        let uri: Uri = source.parse().map_err(|e: hyper::http::uri::InvalidUri| fetch_error(e.to_string()))?;
        let host = uri.host().ok_or_else(|| fetch_error("no host".to_owned()))?.to_owned();
        let (mut sender, connection) =
            connection::open(&uri, Some(self.tls.clone())).await.map_err(|e| fetch_error(e.to_string()))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host.as_str())
            .header(hyper::header::USER_AGENT, concat!("upkeep-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(range) = range {
            request = request.header(hyper::header::RANGE, range);
        }
        let request = request.body(Empty::<Bytes>::new()).map_err(|e| fetch_error(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| fetch_error(e.to_string()))?;
        Ok((response, connection))
    }

    async fn copy_https<W: AsyncWrite + Unpin>(&self, source: &str, sink: &mut Sink<'_, W>) -> Result<(), FileError> {
        let fetch_error = |reason: String| FileError::Fetch { source_url: source.to_owned(), reason };
        let (response, _connection) = self.request_https(source, Method::GET, None).await?;
        if !response.status().is_success() {
            return Err(fetch_error(format!("server answered {}", response.status())));
        }
        let declared = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > sink.limit) {
            return Err(FileError::TooLarge { limit: sink.limit });
        }
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| fetch_error(e.to_string()))?;
            if let Some(chunk) = frame.data_ref() {
                sink.write(chunk, source).await?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
