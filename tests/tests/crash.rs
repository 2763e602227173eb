//! Killing the agent with SIGKILL at every step boundary and inside Stage, Swap
//! and rollback (test-only crash points), and at random instants: after a
//! restart the binary is byte-identical to the old or the new version, the state
//! says which, no operation is left running, and the same request token does not
//! upgrade twice.

use std::time::Duration;

use upkeep_tests::agent_process::AgentProcess;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::pki::Pki;
use upkeep_tests::upgrades::{Artifact, kubelet_artifact, setup, upgrade_body, wait_for_end};

const WITHIN: Duration = Duration::from_secs(60);
const TOKEN: &str = "crash-test:worker-1";

struct Scenario {
    runtime: tokio::runtime::Runtime,
    pki: Pki,
    health_port: u16,
    artifacts: tempfile::TempDir,
}

/// What one crash left behind, checked after the restart.
struct Outcome {
    phase: String,
    installed: Vec<u8>,
    observed: String,
}

impl Scenario {
    fn new() -> Scenario {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let health_port = runtime.block_on(start_health_server());
        Scenario { runtime, pki: Pki::new(), health_port, artifacts: tempfile::tempdir().expect("tempdir") }
    }

    fn client(&self, agent: &AgentProcess) -> ApiClient {
        let config = client_config(&self.pki.ca_cert(), Some(&self.pki.client("operator")));
        self.runtime.block_on(ApiClient::connect(agent.addr, config)).expect("connects")
    }

    fn post_upgrade(&self, client: &mut ApiClient, artifact: &Artifact) -> serde_json::Value {
        let body = upgrade_body("v1.30.3", artifact, Some(TOKEN)).to_string();
        let reply = self.runtime.block_on(client.post_json("/v1/upgrades", &body)).expect("reply");
        assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
        reply.json()
    }

    /// Starts an agent, has it upgrade with the kill armed at `point` (or a
    /// kill after `delay`), restarts it, and returns what it settled on.
    fn crash_and_recover(&self, point: Option<&str>, delay: Duration, healthy: bool) -> (Outcome, Vec<u8>, Artifact) {
        let agent = AgentProcess::start_with(&self.pki, &setup("v1.30.2", self.health_port, ""));
        let original = std::fs::read(agent.kubelet_path()).expect("installed kubelet");
        let artifact = kubelet_artifact(self.artifacts.path(), "v1.30.3", healthy);
        let mut agent = match point {
            Some(point) => agent.restart(&[("UPKEEP_CRASH_AT", point)]),
            None => agent,
        };
        let mut client = self.client(&agent);
        let id = self.post_upgrade(&mut client, &artifact)["id"].as_str().expect("id").to_owned();
        match point {
            Some(point) => {
                let status = agent.wait_exit(WITHIN);
                assert!(status.is_some(), "crash point {point} was never reached; log:\n{}", agent.log());
            }
            None => std::thread::sleep(delay),
        }
        let agent = agent.restart(&[]);
        let mut client = self.client(&agent);
        let operation = self.runtime.block_on(wait_for_end(&mut client, &id, WITHIN));
        let node = self.runtime.block_on(client.get("/v1/node")).expect("reply").json();
        let operations = self.runtime.block_on(client.get("/v1/operations")).expect("reply").json();
        let running: Vec<_> = operations["operations"]
            .as_array()
            .expect("operations")
            .iter()
            .filter(|op| matches!(op["phase"].as_str(), Some("Pending" | "Running")))
            .collect();
        assert!(running.is_empty(), "{point:?}: operations left running: {running:?}");

        let again = self.post_upgrade(&mut client, &artifact);
        assert_eq!(again["id"], id.as_str(), "{point:?}: the same token names the same operation");
        let completed =
            node["history"].as_array().expect("history").iter().filter(|h| h["state"] == "Completed").count();
        assert!(completed <= 1, "{point:?}: upgraded more than once: {node:#}");

        let outcome = Outcome {
            phase: operation["phase"].as_str().unwrap_or_default().to_owned(),
            installed: std::fs::read(agent.kubelet_path()).expect("installed kubelet"),
            observed: node["components"][0]["observed_version"].as_str().unwrap_or_default().to_owned(),
        };
        (outcome, original, artifact)
    }
}

/// The binary is whole, one side or the other, and the state agrees.
fn assert_consistent(point: &str, outcome: &Outcome, original: &[u8], artifact: &Artifact) {
    if outcome.installed == artifact.bytes {
        assert_eq!(outcome.phase, "Succeeded", "{point}: new bytes but the operation says {}", outcome.phase);
        assert_eq!(outcome.observed, "v1.30.3", "{point}");
    } else {
        assert_eq!(outcome.installed, original, "{point}: the binary is neither the old nor the new version");
        assert_ne!(outcome.phase, "Succeeded", "{point}: old bytes but the operation says Succeeded");
        assert_eq!(outcome.observed, "v1.30.2", "{point}");
    }
}

fn run_points(points: &[&str], expected_phase: &str, healthy: bool) {
    let scenario = Scenario::new();
    for point in points {
        let (outcome, original, artifact) = scenario.crash_and_recover(Some(point), Duration::ZERO, healthy);
        assert_consistent(point, &outcome, &original, &artifact);
        assert_eq!(outcome.phase, expected_phase, "{point}: resumed to the wrong end");
    }
}

#[test]
fn kills_before_the_swap_resume_to_success() {
    run_points(
        &[
            "before:PreCheck",
            "after:PreCheck",
            "before:Stage",
            "stage:kubelet",
            "after:Stage",
            "before:Cordon",
            "after:Cordon",
            "before:Drain",
            "after:Drain",
        ],
        "Succeeded",
        true,
    );
}

#[test]
fn kills_inside_and_after_the_swap_resume_to_success() {
    run_points(
        &[
            "before:Swap",
            "swap:backup:kubelet",
            "swap:rename:kubelet",
            "after:Swap",
            "before:Restart",
            "after:Restart",
            "before:PostCheck",
            "after:PostCheck",
            "before:Uncordon",
            "after:Uncordon",
        ],
        "Succeeded",
        true,
    );
}

#[test]
fn kills_during_a_rollback_finish_the_rollback() {
    run_points(&["before:PostCheck", "rollback:restore:kubelet"], "RolledBack", false);
}

#[test]
fn kills_at_random_instants_leave_a_whole_binary() {
    let scenario = Scenario::new();
    let seed = std::env::var("UPKEEP_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_u64);
    eprintln!("random kill seed: {seed} (set UPKEEP_CRASH_SEED to reproduce)");
    let mut state = seed;
    for round in 0..6 {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay = Duration::from_millis((state >> 33) % 400);
        let (outcome, original, artifact) = scenario.crash_and_recover(None, delay, true);
        assert_consistent(&format!("round {round}, kill after {delay:?}"), &outcome, &original, &artifact);
    }
}
