//! An etcd snapshot from the JSON gateway's stream to a kept file.
//!
//! `POST /v3/maintenance/snapshot` answers a stream of JSON objects
//! `{"result":{"remaining_bytes":"..","blob":"<base64>"}}` (an `{"error":..}`
//! object if etcd fails midway). The blobs together are etcd's database
//! followed by the sha256 of that database (32 bytes), which `etcdutl
//! snapshot restore` checks; the file keeps both, and the check is made here
//! before the file is kept.
//!
//! The blobs go into a hidden temporary file beside the final one, which is
//! fsynced, checked, renamed to `etcd-snapshot-<UTC time>.db` and followed by
//! an fsync of the directory. On any failure (a dropped future included) the
//! temporary file is removed; one left by a killed agent is removed by the
//! next snapshot. Afterwards only the newest snapshot files are kept.

use std::path::Path;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http_body_util::BodyExt;
use hyper::body::{Body, Bytes};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use upkeep_common::api::SnapshotInfo;
use upkeep_common::ids::Sha256 as Sha256Digest;

use crate::host::etcd::EtcdError;
use crate::host::files::PartialFile;

/// The start of every kept snapshot file's name.
const NAME_PREFIX: &str = "etcd-snapshot-";
/// The end of every kept snapshot file's name.
const NAME_SUFFIX: &str = ".db";
/// The end of a temporary file's name (which also starts with a dot).
const PARTIAL_SUFFIX: &str = ".partial";
/// The length of etcd's trailing sha256.
const TRAILER_LEN: usize = 32;
/// The most bytes of one JSON object held while it is incomplete (etcd sends
/// 32 KiB blobs, about 44 KiB of JSON).
const MAX_OBJECT_BYTES: usize = 8 * 1024 * 1024;

/// Bounds of one snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// The largest snapshot accepted, in bytes.
    pub max_bytes: u64,
    /// How many snapshot files are kept.
    pub keep: usize,
}

/// The name of the snapshot taken at `taken_at`; names sort as their times do.
pub fn snapshot_name(taken_at: DateTime<Utc>) -> String {
    format!("{NAME_PREFIX}{}{NAME_SUFFIX}", taken_at.format("%Y%m%dT%H%M%S%.3fZ"))
}

/// Whether `name` is a kept snapshot file's name.
fn is_snapshot_name(name: &str) -> bool {
    name.starts_with(NAME_PREFIX) && name.ends_with(NAME_SUFFIX)
}

/// Whether `name` is a temporary snapshot file's name.
fn is_partial_name(name: &str) -> bool {
    name.strip_prefix('.').is_some_and(|rest| rest.starts_with(NAME_PREFIX)) && name.ends_with(PARTIAL_SUFFIX)
}

/// Of the files named `names` in the snapshot directory, the snapshot files to
/// remove so that only the newest `keep` remain.
pub fn to_prune(names: &[String], keep: usize) -> Vec<String> {
    let mut snapshots: Vec<&String> = names.iter().filter(|name| is_snapshot_name(name)).collect();
    snapshots.sort_unstable();
    let excess = snapshots.len().saturating_sub(keep);
    snapshots.into_iter().take(excess).cloned().collect()
}

/// One object of the stream. Fields other than these are ignored.
#[derive(Debug, Deserialize)]
struct StreamObject {
    #[serde(default)]
    result: Option<StreamChunk>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct StreamChunk {
    #[serde(default)]
    blob: Option<String>,
}

/// Turns the stream's bytes, as they arrive, into the snapshot's bytes.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

/// Why the stream could not be decoded. Both are worth a new snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFault {
    /// Not the stream etcd sends: bad JSON, bad base64, an object too long.
    #[error("{0}")]
    Corrupt(String),
    /// etcd sent an error object instead of the next blob.
    #[error("etcd failed the snapshot: {0}")]
    Etcd(String),
}

impl StreamDecoder {
    /// The snapshot bytes carried by every object completed by `bytes`.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<u8>, StreamFault> {
        self.pending.extend_from_slice(bytes);
        let mut decoded = Vec::new();
        let mut objects = serde_json::Deserializer::from_slice(&self.pending).into_iter::<StreamObject>();
        let consumed = loop {
            let offset = objects.byte_offset();
            match objects.next() {
                None => break offset,
                Some(Err(error)) if error.is_eof() => break offset,
                Some(Err(error)) => return Err(StreamFault::Corrupt(format!("not etcd's JSON stream: {error}"))),
                Some(Ok(object)) => decoded.extend(blob_of(object)?),
            }
        };
        self.pending.drain(..consumed);
        if self.pending.len() > MAX_OBJECT_BYTES {
            return Err(StreamFault::Corrupt(format!("an object longer than {MAX_OBJECT_BYTES} bytes")));
        }
        Ok(decoded)
    }

    /// Checks that the stream ended between objects.
    pub fn finish(&self) -> Result<(), String> {
        if self.pending.iter().all(u8::is_ascii_whitespace) {
            Ok(())
        } else {
            Err("the stream ended inside an object".to_owned())
        }
    }
}

fn blob_of(object: StreamObject) -> Result<Vec<u8>, StreamFault> {
    if let Some(error) = object.error {
        return Err(StreamFault::Etcd(error.to_string()));
    }
    let Some(blob) = object.result.and_then(|result| result.blob) else { return Ok(Vec::new()) };
    base64::engine::general_purpose::STANDARD
        .decode(blob)
        .map_err(|error| StreamFault::Corrupt(format!("a blob is not base64: {error}")))
}

/// The sha256 of everything but the last 32 bytes, and those bytes, as the
/// snapshot arrives: etcd's own check of its snapshot.
#[derive(Default)]
pub struct TrailerCheck {
    data: Sha256,
    tail: Vec<u8>,
}

impl TrailerCheck {
    /// Takes the next bytes of the snapshot.
    pub fn update(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        let settled = self.tail.len().saturating_sub(TRAILER_LEN);
        self.data.update(&self.tail[..settled]);
        self.tail.drain(..settled);
    }

    /// Whether the last 32 bytes are the sha256 of the bytes before them.
    pub fn verify(self) -> Result<(), String> {
        if self.tail.len() < TRAILER_LEN {
            return Err(format!("{} bytes, shorter than etcd's trailing sha256", self.tail.len()));
        }
        if self.data.finalize().as_slice() == self.tail.as_slice() {
            Ok(())
        } else {
            Err("the trailing sha256 does not match the data".to_owned())
        }
    }
}

/// Writes the snapshot streamed in `body` from `endpoint` into `dir`, then
/// keeps only the newest `limits.keep` snapshot files there.
pub async fn write<B>(
    dir: &Path,
    endpoint: &str,
    taken_at: DateTime<Utc>,
    mut body: B,
    limits: SnapshotLimits,
) -> Result<SnapshotInfo, EtcdError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let disk = |path: &Path| {
        let path = path.display().to_string();
        move |error: std::io::Error| EtcdError::Disk { path, reason: error.to_string() }
    };
    let corrupt = |reason: String| EtcdError::Corrupt { endpoint: endpoint.to_owned(), reason };
    tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).await.map_err(disk(dir))?;
    remove_partials(dir).await.map_err(disk(dir))?;

    let name = snapshot_name(taken_at);
    let final_path = dir.join(&name);
    let partial_path = dir.join(format!(".{name}{PARTIAL_SUFFIX}"));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial_path)
        .await
        .map_err(disk(&partial_path))?;
    let mut partial = PartialFile { path: partial_path.clone(), keep: false };

    let mut decoder = StreamDecoder::default();
    let mut trailer = TrailerCheck::default();
    let mut whole = Sha256::new();
    let mut size: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| corrupt(format!("the stream broke off: {error}")))?;
        let Some(data) = frame.data_ref() else { continue };
        let bytes = decoder.push(data).map_err(|fault| match fault {
            StreamFault::Corrupt(reason) => corrupt(reason),
            StreamFault::Etcd(message) => EtcdError::Refused { endpoint: endpoint.to_owned(), message },
        })?;
        size = size.saturating_add(bytes.len() as u64);
        if size > limits.max_bytes {
            return Err(EtcdError::TooLarge { limit: limits.max_bytes });
        }
        trailer.update(&bytes);
        whole.update(&bytes);
        file.write_all(&bytes).await.map_err(disk(&partial_path))?;
    }
    decoder.finish().map_err(corrupt)?;
    trailer.verify().map_err(corrupt)?;
    file.flush().await.map_err(disk(&partial_path))?;
    file.sync_all().await.map_err(disk(&partial_path))?;
    drop(file);

    tokio::fs::rename(&partial_path, &final_path).await.map_err(disk(&final_path))?;
    partial.keep = true;
    let synced_dir = dir.to_owned();
    tokio::task::spawn_blocking(move || crate::store::sync_dir(&synced_dir))
        .await
        .map_err(|error| EtcdError::Disk { path: dir.display().to_string(), reason: error.to_string() })?
        .map_err(|error| EtcdError::Disk { path: dir.display().to_string(), reason: error.to_string() })?;

    if let Err(error) = prune(dir, limits.keep).await {
        tracing::warn!(dir = %dir.display(), "old etcd snapshots not removed: {error}");
    }
    Ok(SnapshotInfo {
        name,
        path: final_path.display().to_string(),
        size,
        sha256: Sha256Digest::from_bytes(&whole.finalize().into()),
        taken_at,
        endpoint: endpoint.to_owned(),
    })
}

async fn names_in(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut entries = tokio::fs::read_dir(dir).await?;
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Removes temporary files a killed agent left behind.
async fn remove_partials(dir: &Path) -> std::io::Result<()> {
    for name in names_in(dir).await?.into_iter().filter(|name| is_partial_name(name)) {
        tokio::fs::remove_file(dir.join(name)).await?;
    }
    Ok(())
}

async fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    for name in to_prune(&names_in(dir).await?, keep) {
        tokio::fs::remove_file(dir.join(name)).await?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "etcd_snapshot_tests.rs"]
mod tests;
