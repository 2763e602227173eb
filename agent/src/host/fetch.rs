//! Reading artifacts from `file://` and `https://` sources into a file, with a
//! size limit and the sha256 computed on the way. `https://` uses the configured
//! CA bundle, or the Mozilla roots when none is configured; redirects are not
//! followed (a source must name the artifact itself). `file://` sources are
//! read only inside the configured roots (see [`crate::host::file_source`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::Uri;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use upkeep_common::ids::Sha256 as Sha256Digest;
use upkeep_net::client::server_authenticated_client;
use upkeep_net::tls::TlsError;

use crate::host::file_source;
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
            let path = file_source::resolve(&self.file_roots, source).await.map_err(|error| match error {
                file_source::FileSourceError::Unresolvable(reason) => fetch_error(reason),
                refusal => FileError::Refused { source_url: source.to_owned(), reason: refusal.to_string() },
            })?;
            // The resolved path has no symlinks left; one put in its place since is not followed.
            let mut input = tokio::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(&path)
                .await
                .map_err(|e| fetch_error(e.to_string()))?;
            file_source::confirm_opened(&self.file_roots, &input)
                .await
                .map_err(|refusal| FileError::Refused { source_url: source.to_owned(), reason: refusal.to_string() })?;
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let read = input.read(&mut buffer).await.map_err(|e| fetch_error(e.to_string()))?;
                if read == 0 {
                    break;
                }
                sink.write(&buffer[..read], source).await?;
            }
        } else if source.starts_with("https://") {
            self.copy_https(source, &mut sink).await?;
        } else {
            return Err(fetch_error("only file:// and https:// sources are supported".to_owned()));
        }
        sink.file.flush().await.map_err(|e| FileError::Io { path: source.to_owned(), reason: e.to_string() })?;
        Ok(sink.finish())
    }

    async fn copy_https<W: AsyncWrite + Unpin>(&self, source: &str, sink: &mut Sink<'_, W>) -> Result<(), FileError> {
        let fetch_error = |reason: String| FileError::Fetch { source_url: source.to_owned(), reason };
        let uri: Uri = source.parse().map_err(|e: hyper::http::uri::InvalidUri| fetch_error(e.to_string()))?;
        let host = uri.host().ok_or_else(|| fetch_error("no host".to_owned()))?.to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp =
            TcpStream::connect((host.trim_matches(['[', ']']), port)).await.map_err(|e| fetch_error(e.to_string()))?;
        let name =
            ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).map_err(|e| fetch_error(e.to_string()))?;
        let stream =
            TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| fetch_error(e.to_string()))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fetch_error(e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, host.as_str())
            .header(hyper::header::USER_AGENT, concat!("upkeep-agent/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|e| fetch_error(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| fetch_error(e.to_string()))?;
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
