//! Running a host command: no input, output captured, killed when it runs past
//! its timeout.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// How much of a command's output is kept in an error message.
pub const OUTPUT_EXCERPT: usize = 200;

/// A command that ran to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit status, for messages.
    pub status: String,
    /// What it printed on standard output.
    pub stdout: String,
    /// What it printed on standard error.
    pub stderr: String,
}

impl Finished {
    /// The start of everything it printed, trimmed.
    pub fn excerpt(&self) -> String {
        format!("{}{}", self.stdout, self.stderr).trim().chars().take(OUTPUT_EXCERPT).collect()
    }
}

/// Why a command did not run to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfinished {
    /// It could not be started.
    Spawn {
        /// The program.
        program: String,
        /// The operating system's reason.
        reason: String,
    },
    /// It ran past the timeout and was killed.
    Timeout(Duration),
}

/// Runs `command` (program and arguments) within `timeout`.
pub async fn run(command: &[String], timeout: Duration) -> Result<Finished, Unfinished> {
    let Some((program, args)) = command.split_first() else {
        return Err(Unfinished::Spawn { program: String::new(), reason: "empty command".to_owned() });
    };
    let spawn_error = |error: std::io::Error| Unfinished::Spawn { program: program.clone(), reason: error.to_string() };
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| Unfinished::Timeout(timeout))?
        .map_err(spawn_error)?;
    Ok(Finished {
        success: output.status.success(),
        status: output.status.to_string(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
