//! Tests of the real filesystem operations.

use super::*;

fn files(file_root: &Path) -> RealFiles {
    RealFiles::new(ArtifactReader::new(None).expect("Mozilla roots load").with_file_roots(&[file_root.to_owned()]))
}

#[tokio::test]
async fn stage_backup_swap_and_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let binary = dir.path().join("kubelet");
    std::fs::write(&binary, b"old").expect("write");
    let artifact = dir.path().join("artifact");
    std::fs::write(&artifact, b"new binary").expect("write");
    let work = dir.path().join(".upkeep");
    let staged_path = work.join("kubelet.op-1.staged");
    let backup = work.join("kubelet.op-1.backup");
    let files = files(dir.path());

    let staged = files.stage(&format!("file://{}", artifact.display()), &staged_path, 1024).await.expect("stages");
    assert_eq!(staged.size, 10);
    assert_eq!(staged.sha256, digest_of(b"new binary"));
    let mode = std::fs::metadata(&staged_path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);

    files.backup(&binary, &backup).await.expect("backs up");
    files.backup(&binary, &backup).await.expect("backing up twice is a no-op");
    files.rename(&staged_path, &binary).await.expect("swaps");
    assert_eq!(std::fs::read(&binary).expect("read"), b"new binary");
    assert_eq!(std::fs::read(&backup).expect("read"), b"old");
    files.restore(&backup, &binary).await.expect("restores");
    assert_eq!(std::fs::read(&binary).expect("read"), b"old");
    assert!(files.exists(&backup).await, "the backup stays after a restore");
    assert_eq!(files.digest(&dir.path().join("missing")).await.expect("ok"), None);
}

fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("artifact.fifo");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    path
}

/// Whether anything still holds the FIFO open for reading (or is blocked opening it).
fn has_reader(fifo: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new().write(true).custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()).open(fifo);
    match opened {
        Ok(_) => true,
        Err(error) => {
            assert_eq!(error.raw_os_error(), Some(nix::libc::ENXIO), "{error}");
            false
        }
    }
}

#[tokio::test]
async fn a_dropped_stage_from_a_silent_fifo_leaves_no_reader_and_no_partial_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fifo(dir.path());
    let destination = dir.path().join(".upkeep/kubelet.staged");
    let files = files(dir.path());
    let url = format!("file://{}", source.display());
    let stage = files.stage(&url, &destination, 1024);
    let outcome = tokio::time::timeout(Duration::from_millis(300), stage).await;
    assert!(outcome.is_err(), "nobody writes to the FIFO, so the stage is still waiting: {outcome:?}");
    // Checked first: a thread blocked opening the FIFO is released by this probe.
    assert!(!has_reader(&source), "no thread still waits on the FIFO");
    let left: Vec<_> = std::fs::read_dir(dir.path().join(".upkeep"))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing is left in the staging directory: {left:?}");
}

#[tokio::test]
async fn a_fifo_source_is_read_once_a_writer_comes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fifo(dir.path());
    let destination = dir.path().join(".upkeep/kubelet.staged");
    let writer_path = source.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(writer_path, b"new binary").expect("write to the FIFO");
    });
    let staged =
        files(dir.path()).stage(&format!("file://{}", source.display()), &destination, 1024).await.expect("stages");
    writer.join().expect("writer");
    assert_eq!(staged.sha256, digest_of(b"new binary"));
    assert_eq!(std::fs::read(&destination).expect("staged"), b"new binary");
}

#[tokio::test]
async fn special_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = files(Path::new("/dev")).stage("file:///dev/zero", &dir.path().join(".upkeep/x"), 1024).await;
    assert!(
        matches!(&refused, Err(FileError::Fetch { reason, .. }) if reason.contains("not a regular file")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn too_large_and_missing_sources_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifact = dir.path().join("artifact");
    std::fs::write(&artifact, vec![0u8; 2048]).expect("write");
    let destination = dir.path().join(".upkeep/x");
    let files = files(dir.path());
    let large = files.stage(&format!("file://{}", artifact.display()), &destination, 1024).await;
    assert_eq!(large, Err(FileError::TooLarge { limit: 1024 }));
    assert!(!destination.exists());
    let missing = files.stage(&format!("file://{}/nonexistent", dir.path().display()), &destination, 1024).await;
    assert!(matches!(missing, Err(FileError::Fetch { .. })), "{missing:?}");
    let outside = files.stage("file:///etc/hostname", &destination, 1024).await;
    assert!(matches!(outside, Err(FileError::Refused { .. })), "{outside:?}");
    assert!(!destination.exists());
    assert!(files.free_bytes(&dir.path().join("not/yet/there")).await.is_some());
}
