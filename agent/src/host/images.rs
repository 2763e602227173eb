//! Pulling a static pod's image onto the node through the container runtime
//! (`crictl pull IMAGE`, or a configured command), so that kubelet starts the
//! new pod without waiting on a registry.

use std::time::Duration;

use crate::host::BoxFuture;
use crate::host::command::{self, Unfinished};

/// Pulls images.
pub trait ImagePuller: Send + Sync {
    /// Runs `command` with `image` appended, within `timeout`; why not, when it failed.
    fn pull<'a>(
        &'a self,
        command: &'a [String],
        image: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Runs the pull command as a child process.
#[derive(Debug, Default, Clone, Copy)]
pub struct CommandPuller;

impl ImagePuller for CommandPuller {
    fn pull<'a>(
        &'a self,
        command: &'a [String],
        image: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut full = command.to_vec();
            full.push(image.to_owned());
            match command::run(&full, timeout).await {
                Ok(finished) if finished.success => Ok(()),
                Ok(finished) => Err(format!("pulling {image} failed ({}): {}", finished.status, finished.excerpt())),
                Err(Unfinished::Spawn { program, reason }) => Err(format!("cannot run {program}: {reason}")),
                Err(Unfinished::Timeout(after)) => Err(format!("pulling {image} did not finish within {after:?}")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned(), "pull".to_owned()]
    }

    #[tokio::test]
    async fn the_image_is_the_last_argument_and_failures_say_why() {
        let seconds = Duration::from_secs(5);
        assert_eq!(CommandPuller.pull(&sh("test \"$1\" = repo@sha256:x"), "repo@sha256:x", seconds).await, Ok(()));
        let refused = CommandPuller.pull(&sh("echo denied >&2; exit 1"), "repo@sha256:x", seconds).await;
        assert!(refused.expect_err("failed").contains("denied"));
        let slow = CommandPuller.pull(&sh("sleep 30"), "repo@sha256:x", Duration::from_millis(100)).await;
        assert!(slow.expect_err("timed out").contains("did not finish"));
    }
}
