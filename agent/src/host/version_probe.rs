//! The real version probe: runs the configured command with a timeout and reads
//! the first version in its output (`kubelet --version` prints `Kubernetes v1.30.2`);
//! a static pod's version is its manifest's image tag.

use std::time::Duration;

use upkeep_common::Version;

use crate::config::ComponentConfig;
use crate::host::command::{self, Unfinished};
use crate::host::{BoxFuture, ProbeError, VersionProbe};

/// Runs version commands as child processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommandVersionProbe;

impl VersionProbe for CommandVersionProbe {
    fn probe<'a>(
        &'a self,
        component: &'a ComponentConfig,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Version, ProbeError>> {
        Box::pin(async move {
            match component.static_pod() {
                None => run_version_command(&component.version_command, timeout).await,
                Some(pod) => {
                    let text = tokio::fs::read_to_string(&component.path).await.map_err(|error| ProbeError::Spawn {
                        program: component.path.display().to_string(),
                        reason: error.to_string(),
                    })?;
                    crate::static_pod::manifest_version(&text, &pod.container)
                }
            }
        })
    }
}

/// Runs `command` and reads a version from its standard output, or from its
/// standard error when the output has none.
pub async fn run_version_command(command: &[String], timeout: Duration) -> Result<Version, ProbeError> {
    let finished = command::run(command, timeout).await.map_err(|unfinished| match unfinished {
        Unfinished::Spawn { program, reason } => ProbeError::Spawn { program, reason },
        Unfinished::Timeout(timeout) => ProbeError::Timeout(timeout),
    })?;
    if !finished.success {
        return Err(ProbeError::Failed { status: finished.status.clone(), output: finished.excerpt() });
    }
    Version::find_in_text(&finished.stdout)
        .or_else(|| Version::find_in_text(&finished.stderr))
        .ok_or_else(|| ProbeError::NoVersion { output: finished.excerpt() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()]
    }

    #[tokio::test]
    async fn reads_the_version_kubelet_prints() {
        let version = run_version_command(&sh("echo Kubernetes v1.30.2"), Duration::from_secs(5)).await;
        assert_eq!(version, Ok("v1.30.2".parse().expect("valid")));
    }

    #[tokio::test]
    async fn reads_stderr_when_stdout_is_silent() {
        let version = run_version_command(&sh("echo 'kube-proxy version: v1.29.1' >&2"), Duration::from_secs(5)).await;
        assert_eq!(version, Ok("v1.29.1".parse().expect("valid")));
    }

    #[tokio::test]
    async fn reports_failures_by_kind() {
        let failed = run_version_command(&sh("echo broken; exit 3"), Duration::from_secs(5)).await;
        assert!(matches!(failed, Err(ProbeError::Failed { ref output, .. }) if output == "broken"), "{failed:?}");
        let silent = run_version_command(&sh("echo hello"), Duration::from_secs(5)).await;
        assert!(matches!(silent, Err(ProbeError::NoVersion { .. })), "{silent:?}");
        let missing = run_version_command(&["/nonexistent/kubelet".to_owned()], Duration::from_secs(5)).await;
        assert!(matches!(missing, Err(ProbeError::Spawn { .. })), "{missing:?}");
    }

    #[tokio::test]
    async fn a_hung_command_is_killed_at_the_timeout() {
        let hung = run_version_command(&sh("sleep 30"), Duration::from_millis(200)).await;
        assert_eq!(hung, Err(ProbeError::Timeout(Duration::from_millis(200))));
    }
}
