//! How an operator asks a running rollout to pause or abort. The one-shot CLI
//! reads a control file beside its journal (`JOURNAL.control` holding `pause`
//! or `abort`, written by `upkeep rollout pause|abort` from another process);
//! the service sets it in memory from its API.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::watch;

/// What an operator asked of a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Keep going.
    Run,
    /// Stop starting new nodes; resume later.
    Pause,
    /// Stop starting new nodes for good.
    Abort,
}

/// Where a running rollout reads what the operator asked.
#[derive(Debug, Clone)]
pub enum ControlSource {
    /// The control file beside a journal file.
    File(PathBuf),
    /// A value set by the service.
    Shared(watch::Receiver<Control>),
}

impl ControlSource {
    /// What the operator asks now.
    pub fn read(&self) -> Control {
        match self {
            ControlSource::File(journal) => read_control(journal),
            ControlSource::Shared(receiver) => *receiver.borrow(),
        }
    }
}

/// Why the control file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct ControlError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// The control file beside a journal.
pub fn control_path(journal: &Path) -> PathBuf {
    let mut name = journal.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".control");
    journal.with_file_name(name)
}

/// Reads what the operator asked (`Run` when there is no control file).
pub fn read_control(journal: &Path) -> Control {
    match fs::read_to_string(control_path(journal)).map(|text| text.trim().to_owned()).as_deref() {
        Ok("pause") => Control::Pause,
        Ok("abort") => Control::Abort,
        _ => Control::Run,
    }
}

/// Asks a running rollout to pause or abort, or clears the request (`Run`).
pub fn write_control(journal: &Path, control: Control) -> Result<(), ControlError> {
    let path = control_path(journal);
    match control {
        Control::Run => match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ControlError { path, source }),
        },
        Control::Pause => write_atomic(&path, b"pause\n"),
        Control::Abort => write_atomic(&path, b"abort\n"),
    }
}

/// Writes a small file whole: a temporary file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ControlError> {
    let io = |source| ControlError { path: path.to_owned(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&temporary, path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_file_says_pause_abort_or_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = dir.path().join("rollout.redb");
        assert_eq!(read_control(&journal), Control::Run);
        write_control(&journal, Control::Pause).expect("pause");
        assert_eq!(read_control(&journal), Control::Pause);
        write_control(&journal, Control::Abort).expect("abort");
        assert_eq!(ControlSource::File(journal.clone()).read(), Control::Abort);
        write_control(&journal, Control::Run).expect("clear");
        assert_eq!(read_control(&journal), Control::Run);
        assert!(!control_path(&journal).exists(), "clearing removes the file");
        let (sender, receiver) = watch::channel(Control::Run);
        let shared = ControlSource::Shared(receiver);
        sender.send_replace(Control::Pause);
        assert_eq!(shared.read(), Control::Pause);
    }
}
