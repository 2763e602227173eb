//! The `upkeep` CLI against real agent processes on 127.0.0.x: status with an
//! unreachable node, a rollout that patches, skips and reports an injected
//! failure with its step and code, a dry run, and a coordinator killed
//! mid-rollout and resumed without upgrading any node twice.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use upkeep_tests::agent_process::AgentSetup;
use upkeep_tests::binaries;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::fleet::Fleet;
use upkeep_tests::upgrades::{setup, slow_setup};

fn upkeep(args: &[&str]) -> std::process::Output {
    Command::new(binaries::path("upkeep")).args(args).output().expect("upkeep runs")
}

fn upkeep_rollout(fleet: &Fleet, extra: &[&str]) -> std::process::Output {
    let args = fleet.rollout_args(extra);
    Command::new(binaries::path("upkeep")).args(&args).output().expect("upkeep runs")
}

fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn histories(runtime: &tokio::runtime::Runtime, fleet: &Fleet) -> Vec<serde_json::Value> {
    runtime.block_on(async {
        let mut all = Vec::new();
        for node in &fleet.nodes {
            let config = client_config(&fleet.pki.ca_cert(), Some(&fleet.pki.client("reader")));
            let mut client = ApiClient::connect(node.agent.addr, config).await.expect("connects");
            all.push(client.get("/v1/node").await.expect("reply").json()["history"].clone());
        }
        all
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn status_lists_every_node_and_the_unreachable_one() {
    let fleet = Fleet::start(vec![
        ("cp-1", "control-plane", "a", AgentSetup::kubelet("v1.30.2")),
        ("worker-1", "worker", "a", AgentSetup::kubelet("v1.30.3")),
    ]);
    let inventory =
        fleet.write_inventory("\n[[nodes]]\nname = \"ghost\"\naddress = \"127.0.0.30:9\"\nrole = \"worker\"\n");
    let inventory = inventory.to_str().expect("utf-8");
    let table = upkeep(&["status", "--inventory", inventory, "--timeout-secs", "3"]);
    assert_eq!(table.status.code(), Some(2), "an unreachable node makes the exit code non-zero");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().next().is_some_and(|l| l.starts_with("NODE")), "{text}");
    assert!(text.contains("cp-1") && text.contains("kubelet=v1.30.2") && text.contains("Idle"), "{text}");
    assert!(text.contains("worker-1") && text.contains("kubelet=v1.30.3"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("ghost") && l.contains("Unreachable")), "{text}");

    let json = upkeep(&["status", "--inventory", inventory, "--output", "json", "--timeout-secs", "3"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(rows.as_array().map(Vec::len), Some(3));
    assert_eq!(rows[0]["state"]["components"][0]["observed_version"], "v1.30.2");
    assert_eq!(rows[2]["unreadable"]["code"], "unreachable");
    assert!(rows[2]["unreadable"]["message"].as_str().is_some_and(|reason| reason.contains("127.0.0.30:9")));
}

#[test]
fn a_rollout_patches_skips_and_reports_a_failure_with_its_step_and_code() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let healthy = |version: &str| setup(version, port, "");
    let mut broken = setup("v1.30.2", port, "");
    broken.component_extra =
        broken.component_extra.replace("healthz?binary={binary}", "healthz?binary={binary}&refuse=v1.30.3");
    let fleet = Fleet::start(vec![
        ("cp-1", "control-plane", "a", healthy("v1.30.2")),
        ("worker-1", "worker", "a", healthy("v1.30.2")),
        ("worker-2", "worker", "b", healthy("v1.30.3")),
        ("worker-3", "worker", "b", broken),
        ("worker-4", "worker", "a", healthy("v1.30.2")),
    ]);
    let journal = fleet.journal();

    let dry = upkeep_rollout(&fleet, &["--max-unavailable", "2", "--dry-run", "--output", "json"]);
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let plan = &json_lines(&dry.stdout)[0];
    assert_eq!(plan["waves"][0], serde_json::json!(["cp-1"]), "{plan}");
    assert_eq!(plan["waves"][1], serde_json::json!(["worker-1", "worker-2"]), "{plan}");
    assert!(
        histories(&runtime, &fleet).iter().all(|h| h.as_array().is_some_and(Vec::is_empty)),
        "a dry run touches nothing"
    );

    let run = upkeep_rollout(
        &fleet,
        &[
            "--max-unavailable",
            "2",
            "--max-failures",
            "1",
            "--output",
            "json",
            "--journal",
            journal.as_str(),
            "--poll-ms",
            "50",
        ],
    );
    let events = json_lines(&run.stdout);
    let summary = events.last().expect("a summary");
    assert_eq!(summary["event"], "summary");
    assert_eq!(
        summary["counters"],
        serde_json::json!({"patched": 3, "skipped": 1, "pending": 0, "error": 1}),
        "{summary}"
    );
    assert_eq!(summary["errors"][0]["node"], "worker-3");
    assert_eq!(summary["errors"][0]["step"], "PostCheck");
    assert_eq!(summary["errors"][0]["code"], "health_check_failed");
    assert_eq!(run.status.code(), Some(1), "exit code is non-zero when a node is in error");
    assert!(events.iter().any(|e| e["event"] == "node_finished" && e["node"] == "cp-1"));
    let finished: Vec<&str> =
        events.iter().filter(|e| e["event"] == "node_finished").filter_map(|e| e["node"].as_str()).collect();
    assert_eq!(finished.first(), Some(&"cp-1"), "the control plane finishes first: {finished:?}");

    let histories = histories(&runtime, &fleet);
    let states: Vec<Vec<&str>> = histories
        .iter()
        .map(|h| h.as_array().expect("history").iter().filter_map(|e| e["state"].as_str()).collect())
        .collect();
    assert_eq!(states, vec![vec!["Completed"], vec!["Completed"], vec![], vec!["RolledBack"], vec!["Completed"]]);
}

#[test]
fn a_killed_coordinator_resumes_without_upgrading_any_node_twice() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let slow = || slow_setup("v1.30.2", port, "0.5", "");
    let fleet = Fleet::start(vec![
        ("worker-1", "worker", "a", slow()),
        ("worker-2", "worker", "a", slow()),
        ("worker-3", "worker", "a", slow()),
        ("worker-4", "worker", "a", slow()),
        ("worker-5", "worker", "a", slow()),
    ]);
    let journal = fleet.journal();
    let mut coordinator = Command::new(binaries::path("upkeep"))
        .args(fleet.rollout_args(&[
            "--max-unavailable",
            "1",
            "--output",
            "json",
            "--journal",
            journal.as_str(),
            "--poll-ms",
            "20",
        ]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("upkeep starts");
    let stdout = coordinator.stdout.take().expect("piped");
    let mut finished = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if line.contains("\"node_finished\"") {
            finished += 1;
        }
        if finished == 2 || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(finished, 2, "two nodes finished before the kill");
    coordinator.kill().expect("SIGKILL the coordinator");
    let _ = coordinator.wait();

    let inventory = fleet.write_inventory("").display().to_string();
    let resumed = upkeep(&[
        "rollout",
        "resume",
        "--inventory",
        &inventory,
        "--journal",
        journal.as_str(),
        "--output",
        "json",
        "--poll-ms",
        "20",
    ]);
    let events = json_lines(&resumed.stdout);
    let summary = events.last().expect("a summary");
    assert_eq!(
        summary["counters"],
        serde_json::json!({"patched": 5, "skipped": 0, "pending": 0, "error": 0}),
        "{summary}"
    );
    assert!(resumed.status.success());
    for (node, history) in fleet.nodes.iter().zip(histories(&runtime, &fleet)) {
        let upgrades = history.as_array().expect("history").len();
        assert_eq!(upgrades, 1, "{} was upgraded {upgrades} times", node.name);
        let restarts = std::fs::read_to_string(node.agent.dir().join("restarts.log")).unwrap_or_default();
        assert_eq!(restarts.lines().count(), 1, "{} restarted {} times", node.name, restarts.lines().count());
    }
}

#[test]
fn pause_stops_new_nodes_and_resume_finishes() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let fleet = Fleet::workers("v1.30.2", port, 3);
    let journal = fleet.journal();
    let journal_arg = journal.as_str();
    assert!(upkeep(&["rollout", "pause", "--journal", journal_arg]).status.success());
    let paused = upkeep_rollout(&fleet, &["--output", "json", "--journal", journal_arg]);
    let summary = json_lines(&paused.stdout).pop().expect("summary");
    assert_eq!(summary["counters"]["pending"], 3, "a paused rollout starts nothing: {summary}");
    assert_eq!(summary["halt"]["reason"], "stopped");
    assert_eq!(paused.status.code(), Some(2));
    let inventory = fleet.write_inventory("").display().to_string();
    let resumed = upkeep(&[
        "rollout",
        "resume",
        "--inventory",
        &inventory,
        "--journal",
        journal_arg,
        "--output",
        "json",
        "--poll-ms",
        "20",
    ]);
    let summary = json_lines(&resumed.stdout).pop().expect("summary");
    assert_eq!(summary["counters"]["patched"], 3, "{summary}");
}

#[test]
fn abort_is_final_and_neither_a_resume_nor_a_new_rollout_takes_the_journal() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let fleet = Fleet::workers("v1.30.2", port, 2);
    let journal = fleet.journal();
    let journal_arg = journal.as_str();
    assert!(upkeep(&["rollout", "abort", "--journal", journal_arg]).status.success());
    let aborted = upkeep_rollout(&fleet, &["--output", "json", "--journal", journal_arg]);
    let summary = json_lines(&aborted.stdout).pop().expect("summary");
    assert_eq!(summary["counters"]["pending"], 2, "an aborted rollout starts nothing: {summary}");
    let inventory = fleet.write_inventory("").display().to_string();
    let resumed = upkeep(&["rollout", "resume", "--inventory", &inventory, "--journal", journal_arg]);
    assert!(!resumed.status.success(), "an aborted rollout is not resumed");
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(stderr.contains("was aborted"), "{stderr}");
    let again = upkeep(&["rollout", "resume", "--inventory", &inventory, "--journal", journal_arg]);
    assert!(!again.status.success(), "the refusal does not clear the abort");
    let fresh = upkeep_rollout(&fleet, &["--output", "json", "--journal", journal_arg]);
    assert!(!fresh.status.success(), "a new rollout never overwrites a journal");
    let stderr = String::from_utf8_lossy(&fresh.stderr);
    assert!(stderr.contains("already holds rollout"), "{stderr}");
    let upgraded = histories(&runtime, &fleet).iter().filter(|h| !h.as_array().is_some_and(Vec::is_empty)).count();
    assert_eq!(upgraded, 0, "no node was upgraded");
}

#[test]
fn prestage_stages_everywhere_first_and_the_upgrade_reuses_it() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let fleet = Fleet::start(vec![
        ("worker-1", "worker", "a", setup("v1.30.2", port, "")),
        ("worker-2", "worker", "b", setup("v1.30.2", port, "")),
    ]);
    let journal = fleet.journal();
    let run =
        upkeep_rollout(&fleet, &["--prestage", "--output", "json", "--journal", journal.as_str(), "--poll-ms", "20"]);
    let summary = json_lines(&run.stdout).pop().expect("summary");
    assert_eq!(summary["counters"]["patched"], 2, "{summary}");
    for node in &fleet.nodes {
        let operations = runtime.block_on(async {
            let config = client_config(&fleet.pki.ca_cert(), Some(&fleet.pki.client("reader")));
            let mut client = ApiClient::connect(node.agent.addr, config).await.expect("connects");
            client.get("/v1/operations").await.expect("reply").json()["operations"].clone()
        });
        let operations = operations.as_array().expect("operations");
        assert_eq!(operations.len(), 2, "a stage-only operation, then the upgrade: {operations:#?}");
        let (upgrade, staging) = (&operations[0], &operations[1]);
        assert_eq!(staging["steps"][1]["status"], "Success");
        assert_eq!(staging["steps"][4]["status"], "Skipped", "staging swaps nothing");
        let stage_message = upgrade["steps"][1]["message"].as_str().unwrap_or_default();
        assert!(stage_message.contains("already staged"), "the upgrade reuses the staged artifact: {stage_message}");
        assert_eq!(upgrade["phase"], "Succeeded");
    }
}

#[test]
fn a_rollout_takes_its_version_and_each_nodes_artifacts_from_a_release_catalog() {
    let runtime = runtime();
    let port = runtime.block_on(start_health_server());
    let fleet = Fleet::workers("v1.30.2", port, 2);
    let dir = fleet.dir.path();
    let mut releases = upkeep_tests::service_process::release(
        "1.30.3",
        &["stable"],
        &upkeep_tests::upgrades::kubelet_artifact(dir, "v1.30.3", true),
        &[],
    );
    releases.push_str(&upkeep_tests::service_process::release(
        "1.30.4",
        &["fast"],
        &upkeep_tests::upgrades::kubelet_artifact(dir, "v1.30.4", true),
        &[],
    ));
    let catalog = dir.join("releases.toml");
    std::fs::write(&catalog, format!("channel = \"stable\"\n{releases}")).expect("write catalog");
    let inventory = fleet.write_inventory("").display().to_string();
    let (catalog, journal) = (catalog.display().to_string(), fleet.journal());
    let rolled = upkeep(&[
        "rollout",
        "--inventory",
        &inventory,
        "--to",
        "1.30",
        "--catalog",
        &catalog,
        "--output",
        "json",
        "--journal",
        &journal,
    ]);
    let summary = json_lines(&rolled.stdout).pop().expect("summary");
    assert_eq!(summary["counters"]["patched"], 2, "1.30 is 1.30.3, the newest of the stable channel: {summary}");
    for history in fleet.histories() {
        let version = history[0]["version"].as_str().map(|v| v.trim_start_matches('v'));
        assert_eq!(version, Some("1.30.3"), "{history}");
    }
    let refused = upkeep(&["rollout", "--inventory", &inventory, "--to", "1.29", "--catalog", &catalog]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("1.29"), "the refusal names the version");
}

#[test]
fn numbers_out_of_range_are_refused_before_anything_runs() {
    for (flag, value) in
        [("--soak", "18446744073709551615"), ("--soak", "86401"), ("--per-zone", "0"), ("--poll-ms", "0")]
    {
        let output = upkeep(&["rollout", "--inventory", "absent.toml", "--to", "v1.30.3", "--dry-run", flag, value]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag) && !stderr.contains("panicked"), "{flag} {value}: {stderr}");
    }
}
