//! One upgrade on this machine with zero artificial delay (the in-process agent
//! upgrading a fake kubelet from a `file://` artifact, restart command
//! `/bin/true`), and the recovery time after a kill (a real agent process killed
//! with SIGKILL right after Swap, restarted, until its operation has ended).
//! Prints the median and the spread of each.
//!
//! Run: `cargo bench -p upkeep-benches --bench upgrade_cycle`
//! (`UPKEEP_BENCH_ROUNDS` changes the number of rounds, 20 by default).

use std::time::{Duration, Instant};

use upkeep_tests::agent_process::{AgentProcess, AgentSetup};
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::in_process::InProcessAgent;
use upkeep_tests::pki::Pki;
use upkeep_tests::upgrades::{kubelet_artifact, upgrade_body, wait_for_end_every};

/// How often the operation is polled: the figures are accurate to about this much.
const POLL: Duration = Duration::from_millis(2);

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let rounds: usize = std::env::var("UPKEEP_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let pki = Pki::new();
    let artifacts = tempfile::tempdir().expect("tempdir");
    let config = client_config(&pki.ca_cert(), Some(&pki.client("operator")));

    let upgrades = runtime.block_on(async {
        let extra = "";
        let agent =
            InProcessAgent::start_with_components(&pki, "v1.30.2", "restart_command = [\"/bin/true\"]\n", extra).await;
        let mut client = ApiClient::connect(agent.addr, config.clone()).await.expect("connects");
        let mut samples = Vec::new();
        for round in 0..rounds {
            let version = format!("v1.30.{}", round + 3);
            let artifact = kubelet_artifact(artifacts.path(), &version, true);
            let started = Instant::now();
            let body = upgrade_body(&version, &artifact, None).to_string();
            let reply = client.post_json("/v1/upgrades", &body).await.expect("reply");
            let id = reply.json()["id"].as_str().expect("id").to_owned();
            let operation = wait_for_end_every(&mut client, &id, Duration::from_secs(60), POLL).await;
            samples.push(started.elapsed());
            assert_eq!(operation["phase"], "Succeeded", "{operation:#}");
        }
        samples
    });
    println!("one upgrade, zero artificial delay: {}", upkeep_benches::duration_summary(upgrades));

    let recovery_rounds = rounds.clamp(1, 10);
    let mut recoveries = Vec::new();
    for _ in 0..recovery_rounds {
        let setup = AgentSetup {
            component_extra: "restart_command = [\"/bin/true\"]\n".to_owned(),
            ..AgentSetup::kubelet("v1.30.2")
        };
        let agent = AgentProcess::start_with(&pki, &setup).restart(&[("UPKEEP_CRASH_AT", "after:Swap")]);
        let artifact = kubelet_artifact(artifacts.path(), "v1.30.3", true);
        let id = runtime.block_on(async {
            let mut client = ApiClient::connect(agent.addr, config.clone()).await.expect("connects");
            let reply = client.post_json("/v1/upgrades", &upgrade_body("v1.30.3", &artifact, None).to_string()).await;
            reply.expect("reply").json()["id"].as_str().expect("id").to_owned()
        });
        let mut agent = agent;
        assert!(agent.wait_exit(Duration::from_secs(60)).is_some(), "the crash point was reached");
        let started = Instant::now();
        let agent = agent.restart(&[]);
        runtime.block_on(async {
            let mut client = ApiClient::connect(agent.addr, config.clone()).await.expect("connects");
            let operation = wait_for_end_every(&mut client, &id, Duration::from_secs(60), POLL).await;
            assert_eq!(operation["phase"], "Succeeded");
        });
        recoveries.push(started.elapsed());
    }
    println!(
        "recovery after SIGKILL right after Swap (restart to operation ended): {}",
        upkeep_benches::duration_summary(recoveries)
    );
}
