//! Tests of the snapshot stream, its check, the kept file and retention.

use std::convert::Infallible;

use http_body_util::StreamBody;
use hyper::body::Frame;

use super::*;

/// A database of `len` bytes followed by its sha256, as etcd sends it.
fn snapshot_bytes(len: usize) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len).map(|index| (index % 251) as u8).collect();
    let digest = Sha256::digest(&data);
    data.extend_from_slice(&digest);
    data
}

/// The gateway's stream for `bytes`, in blobs of `blob` bytes, one object a line.
fn stream_of(bytes: &[u8], blob: usize) -> Vec<u8> {
    let mut text = String::new();
    for chunk in bytes.chunks(blob) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(chunk);
        text.push_str(&format!("{{\"result\":{{\"remaining_bytes\":\"0\",\"blob\":\"{encoded}\"}}}}\n"));
    }
    text.into_bytes()
}

/// The frames of a body, in order.
type Frames = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

/// A body delivering `bytes` in pieces of `piece` bytes, cut anywhere.
fn body_of(bytes: Vec<u8>, piece: usize) -> StreamBody<Frames> {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> =
        bytes.chunks(piece).map(|chunk| Ok(Frame::data(Bytes::copy_from_slice(chunk)))).collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

/// `seconds` after 2026-12-01T09:11:15.123Z.
fn at(seconds: i64) -> DateTime<Utc> {
    let start = DateTime::parse_from_rfc3339("2026-12-01T09:11:15.123Z").expect("time").with_timezone(&Utc);
    start + chrono::TimeDelta::seconds(seconds)
}

const LIMITS: SnapshotLimits = SnapshotLimits { max_bytes: 1 << 20, keep: 3 };

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn the_decoder_takes_objects_cut_anywhere() {
    let bytes = snapshot_bytes(100_000);
    let stream = stream_of(&bytes, 32 * 1024);
    for piece in [1, 7, 1000, stream.len()] {
        let mut decoder = StreamDecoder::default();
        let mut decoded = Vec::new();
        for chunk in stream.chunks(piece) {
            decoded.extend(decoder.push(chunk).expect("valid stream"));
        }
        decoder.finish().expect("ends between objects");
        assert_eq!(decoded, bytes, "pieces of {piece}");
    }
}

#[test]
fn the_decoder_refuses_what_etcd_does_not_send() {
    let mut cut = StreamDecoder::default();
    cut.push(b"{\"result\":{\"blob\":\"AAAA").expect("incomplete so far");
    assert!(cut.finish().is_err());
    assert!(matches!(StreamDecoder::default().push(b"{\"result\":{\"blob\":\"!!\"}}"), Err(StreamFault::Corrupt(_))));
    assert!(matches!(StreamDecoder::default().push(b"[1,2]"), Err(StreamFault::Corrupt(_))));
    let error = StreamDecoder::default().push(b"{\"error\":{\"grpc_code\":14,\"message\":\"no leader\"}}");
    assert!(matches!(error, Err(StreamFault::Etcd(message)) if message.contains("no leader")));
}

#[test]
fn the_trailer_check_holds_only_for_etcds_own_digest() {
    let bytes = snapshot_bytes(5000);
    let mut check = TrailerCheck::default();
    for chunk in bytes.chunks(13) {
        check.update(chunk);
    }
    check.verify().expect("etcd's digest matches");
    let mut flipped = bytes.clone();
    flipped[10] ^= 1;
    let mut check = TrailerCheck::default();
    check.update(&flipped);
    assert!(check.verify().is_err(), "a flipped data byte is caught");
    let mut short = TrailerCheck::default();
    short.update(&bytes[..20]);
    assert!(short.verify().is_err(), "fewer bytes than a digest");
}

#[test]
fn names_sort_as_times_and_only_the_newest_are_kept() {
    let names: Vec<String> = [at(30), at(10), at(20), at(40)].into_iter().map(snapshot_name).collect();
    assert_eq!(names[1], "etcd-snapshot-20261201T091125.123Z.db");
    let mut all = names.clone();
    all.push("other.db".to_owned());
    all.push(".etcd-snapshot-x.db.partial".to_owned());
    assert_eq!(to_prune(&all, 2), [names[1].clone(), names[2].clone()]);
    assert!(to_prune(&all, 4).is_empty());
}

#[tokio::test]
async fn a_whole_stream_becomes_a_synced_file_with_its_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let snapshots = dir.path().join("etcd-snapshots");
    let bytes = snapshot_bytes(70_000);
    let info = write(&snapshots, "https://e:2379", at(0), body_of(stream_of(&bytes, 32 * 1024), 5000), LIMITS)
        .await
        .expect("snapshot");
    let kept = std::fs::read(&info.path).expect("the file");
    assert_eq!(kept, bytes, "the file holds the data and etcd's digest");
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.sha256, Sha256Digest::from_bytes(&Sha256::digest(&bytes).into()));
    assert_eq!(files_in(&snapshots), std::slice::from_ref(&info.name));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&info.path).expect("metadata").permissions().mode();
    assert_eq!(mode & 0o077, 0, "a snapshot holds every secret of the cluster: owner only");
}

#[tokio::test]
async fn a_failed_snapshot_leaves_no_file_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bad_digest = snapshot_bytes(40_000);
    bad_digest[100] ^= 0xff;
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (stream_of(&bad_digest, 32 * 1024), 1 << 20, "corrupt"),
        (stream_of(&snapshot_bytes(40_000), 32 * 1024)[..50_000].to_vec(), 1 << 20, "corrupt"),
        (stream_of(&snapshot_bytes(40_000), 32 * 1024), 35_000, "too large"),
    ];
    for (stream, max_bytes, expected) in cases {
        let limits = SnapshotLimits { max_bytes, keep: 3 };
        let error =
            write(dir.path(), "https://e:2379", at(0), body_of(stream, 4096), limits).await.expect_err(expected);
        match expected {
            "corrupt" => assert!(matches!(error, EtcdError::Corrupt { .. }), "{error}"),
            _ => assert_eq!(error, EtcdError::TooLarge { limit: max_bytes }),
        }
        assert!(files_in(dir.path()).is_empty(), "{expected}: {:?}", files_in(dir.path()));
    }
}

#[tokio::test]
async fn old_snapshots_and_a_killed_agents_partial_file_are_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stale = format!(".{}{PARTIAL_SUFFIX}", snapshot_name(at(-5)));
    std::fs::write(dir.path().join(&stale), b"half").expect("stale partial");
    std::fs::write(dir.path().join("unrelated.db"), b"kept").expect("unrelated file");
    let bytes = snapshot_bytes(1000);
    let limits = SnapshotLimits { max_bytes: 1 << 20, keep: 2 };
    let mut names = Vec::new();
    for second in 0..3 {
        let body = body_of(stream_of(&bytes, 512), 100);
        names.push(write(dir.path(), "https://e:2379", at(second), body, limits).await.expect("snapshot").name);
    }
    assert_eq!(files_in(dir.path()), [names[1].clone(), names[2].clone(), "unrelated.db".to_owned()]);
}
