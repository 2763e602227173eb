//! Restarting a component's service: `systemctl restart UNIT`, or the
//! component's own restart command on hosts without systemd.

use std::time::Duration;

use crate::config::{ComponentConfig, RestartMethod};
use crate::host::BoxFuture;
use crate::host::command::{self, Unfinished};

/// Why a restart failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    /// The command could not be started.
    #[error("cannot run {program}: {reason}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        reason: String,
    },
    /// The command exited unsuccessfully.
    #[error("restart command failed ({status}): {output}")]
    Failed {
        /// Exit status.
        status: String,
        /// The start of its output.
        output: String,
    },
    /// The command ran past the timeout and was killed.
    #[error("restart did not finish within {0:?}")]
    Timeout(Duration),
}

/// What a restart did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartOutcome {
    /// The service was restarted.
    Restarted,
    /// The component has nothing to restart.
    NothingToRestart,
}

/// Restarts components' services.
pub trait ServiceManager: Send + Sync {
    /// Restarts `component`'s service, within `timeout`.
    fn restart<'a>(
        &'a self,
        component: &'a ComponentConfig,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<RestartOutcome, RestartError>>;
}

/// systemd, or the configured command.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealServices;

impl ServiceManager for RealServices {
    fn restart<'a>(
        &'a self,
        component: &'a ComponentConfig,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<RestartOutcome, RestartError>> {
        Box::pin(async move {
            let command = match &component.restart {
                RestartMethod::None => return Ok(RestartOutcome::NothingToRestart),
                RestartMethod::Systemd(unit) => vec!["systemctl".to_owned(), "restart".to_owned(), unit.clone()],
                RestartMethod::Command(command) => command.clone(),
            };
            run(&command, timeout).await.map(|()| RestartOutcome::Restarted)
        })
    }
}

/// Runs a command to completion within `timeout`.
pub async fn run(command: &[String], timeout: Duration) -> Result<(), RestartError> {
    let finished = command::run(command, timeout).await.map_err(|unfinished| match unfinished {
        Unfinished::Spawn { program, reason } => RestartError::Spawn { program, reason },
        Unfinished::Timeout(timeout) => RestartError::Timeout(timeout),
    })?;
    if finished.success {
        Ok(())
    } else {
        Err(RestartError::Failed { status: finished.status.clone(), output: finished.excerpt() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn commands_succeed_fail_or_time_out() {
        assert_eq!(run(&sh("exit 0"), Duration::from_secs(5)).await, Ok(()));
        let failed = run(&sh("echo nope >&2; exit 1"), Duration::from_secs(5)).await;
        assert!(matches!(failed, Err(RestartError::Failed { ref output, .. }) if output == "nope"), "{failed:?}");
        let hung = run(&sh("sleep 30"), Duration::from_millis(100)).await;
        assert_eq!(hung, Err(RestartError::Timeout(Duration::from_millis(100))));
    }
}
