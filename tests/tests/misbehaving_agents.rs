//! The `upkeep` CLI against scripted agents that misbehave on purpose, beside
//! real agent processes: the rollout ends within its deadlines with the right
//! counters and codes, its peak memory stays bounded, the real agents are
//! upgraded once, a SIGTERM ends it within the stop wait, the journal keeps up
//! with finished nodes even through a SIGKILL, and `upkeep status` says why
//! each unreadable node cannot be read.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use upkeep_coordinator::journal::JournalStore;
use upkeep_coordinator::plan::NodeStatus;
use upkeep_tests::binaries;
use upkeep_tests::client::{ApiClient, client_config};
use upkeep_tests::fake_kubelet::start_health_server;
use upkeep_tests::fleet::Fleet;
use upkeep_tests::scripted_agent::{Behaviour, ScriptedAgent};

/// A running `upkeep` whose JSON lines are read as they come, each with the time it arrived.
struct Coordinator {
    child: Child,
    lines: mpsc::Receiver<(Instant, serde_json::Value)>,
    seen: Vec<(Instant, serde_json::Value)>,
}

impl Coordinator {
    fn start(args: &[String]) -> Coordinator {
        Self::spawn(Command::new(binaries::path("upkeep")).args(args))
    }

    /// Runs `upkeep` under `upkeep-peak-rss`, which writes its peak memory to `out`.
    fn start_measured(args: &[String], out: &std::path::Path) -> Coordinator {
        Self::spawn(Command::new(binaries::path("upkeep-peak-rss")).arg(out).arg(binaries::path("upkeep")).args(args))
    }

    fn spawn(command: &mut Command) -> Coordinator {
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("upkeep starts");
        let stdout = child.stdout.take().expect("piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                if sender.send((Instant::now(), value)).is_err() {
                    return;
                }
            }
        });
        Coordinator { child, lines, seen: Vec::new() }
    }

    /// Reads lines until `done` holds for the lines so far, or `limit` passes.
    fn read_until(&mut self, limit: Duration, done: impl Fn(&[(Instant, serde_json::Value)]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while !done(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return false,
            }
        }
        true
    }

    /// Waits for the process to end within `limit` (killing it if it does not), then reads its last lines.
    fn finish(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        status
    }

    fn summary(&self) -> &serde_json::Value {
        let last = &self.seen.last().expect("a line").1;
        assert_eq!(last["event"], "summary", "{last}");
        last
    }

    /// Each finished node's outcome and error code.
    fn outcomes(&self) -> BTreeMap<String, (String, String)> {
        self.seen
            .iter()
            .filter(|(_, line)| line["event"] == "node_finished")
            .map(|(_, line)| {
                let name = line["node"].as_str().expect("node").to_owned();
                let outcome = line["outcome"].as_str().expect("outcome").to_owned();
                let code = line["error"]["code"].as_str().unwrap_or("").to_owned();
                (name, (outcome, code))
            })
            .collect()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Two real agents (worker-1, worker-2) at v1.30.2 with a healthy kubelet.
fn real_fleet(runtime: &tokio::runtime::Runtime) -> Fleet {
    let port = runtime.block_on(start_health_server());
    Fleet::workers("v1.30.2", port, 2)
}

/// Starts one scripted agent per behaviour, each on its own 127.0.1.x, named
/// `NAME`, and returns them with the inventory entries that list them.
fn scripted(
    runtime: &tokio::runtime::Runtime,
    fleet: &Fleet,
    behaviours: &[(&str, Behaviour)],
) -> (Vec<ScriptedAgent>, String) {
    let mut agents = Vec::new();
    let mut entries = String::new();
    for (index, (name, behaviour)) in behaviours.iter().enumerate() {
        let listen = format!("127.0.1.{}:0", index + 1);
        let agent = runtime.block_on(ScriptedAgent::start(&fleet.pki, &listen, name, "v1.30.2", *behaviour));
        entries.push_str(&format!("\n[[nodes]]\nname = \"{name}\"\naddress = \"{}\"\nrole = \"worker\"\n", agent.addr));
        agents.push(agent);
    }
    (agents, entries)
}

/// The rollout arguments for the fleet with `entries` listed before its own
/// nodes, then `extra`.
fn rollout_args(fleet: &Fleet, entries: &str, extra: &[&str]) -> Vec<String> {
    let mut args = fleet.rollout_args(&["--output", "json", "--journal", &fleet.journal(), "--poll-ms", "50"]);
    let inventory = fleet.write_inventory("");
    let text = std::fs::read_to_string(&inventory).expect("the inventory");
    let (head, nodes) = text.split_at(text.find("\n[[nodes]]").expect("a node"));
    std::fs::write(&inventory, format!("{head}{entries}{nodes}")).expect("rewrite the inventory");
    let position = args.iter().position(|a| a == "--inventory").expect("an inventory argument") + 1;
    args[position] = inventory.display().to_string();
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    args
}

/// How many upgrade operations each real agent ran.
fn upgrades_run(runtime: &tokio::runtime::Runtime, fleet: &Fleet) -> Vec<usize> {
    runtime.block_on(async {
        let mut counts = Vec::new();
        for node in &fleet.nodes {
            let config = client_config(&fleet.pki.ca_cert(), Some(&fleet.pki.client("reader")));
            let mut client = ApiClient::connect(node.agent.addr, config).await.expect("connects");
            let list = client.get("/v1/operations").await.expect("reply").json();
            let upgrades = list["operations"].as_array().expect("operations").iter();
            counts.push(upgrades.filter(|op| op["kind"] == "upgrade").count());
        }
        counts
    })
}

#[test]
fn a_rollout_beside_misbehaving_agents_ends_in_time_with_every_code_and_bounded_memory() {
    let runtime = runtime();
    let fleet = real_fleet(&runtime);
    let expected: Vec<(&str, Behaviour, &str, &str)> = vec![
        ("stays-running", Behaviour::StaysRunning, "error", "timeout"),
        ("closes-connections", Behaviour::ClosesEveryConnection, "error", "unreachable"),
        ("never-answers", Behaviour::NeverAnswers, "error", "timeout"),
        ("byte-a-second", Behaviour::OneBytePerSecond, "error", "timeout"),
        ("huge-body", Behaviour::HugeBody, "error", "response_too_large"),
        ("endless-body", Behaviour::EndlessBody, "error", "response_too_large"),
        ("untrusted", Behaviour::UntrustedCertificate, "error", "certificate_invalid"),
        ("elsewhere", Behaviour::CertificateForAnotherAddress, "error", "certificate_invalid"),
        ("wrong-id", Behaviour::WrongOperationId, "error", "operation_mismatch"),
        ("wrong-kind", Behaviour::WrongKind, "error", "operation_mismatch"),
        ("wrong-target", Behaviour::WrongTarget, "error", "operation_mismatch"),
        ("goes-back", Behaviour::PhaseGoesBack, "error", "operation_phase_regressed"),
        ("runs-again", Behaviour::RunsAgainAfterSucceeding, "error", "operation_phase_regressed"),
        ("unchanged", Behaviour::SucceedsWithoutChange, "error", "version_not_reached"),
        ("impostor", Behaviour::WrongNodeName, "error", "node_name_mismatch"),
        ("unavailable-thrice", Behaviour::Unavailable { times: 3 }, "patched", ""),
        ("busy-thrice", Behaviour::Busy { times: 3 }, "patched", ""),
        ("unknown-code", Behaviour::UnknownErrorCode, "error", "quota_exhausted"),
        ("redirects", Behaviour::Redirect, "error", "redirect"),
        ("unreadable", Behaviour::UnreadableBody, "error", "bad_response"),
    ];
    let behaviours: Vec<(&str, Behaviour)> = expected.iter().map(|(n, b, _, _)| (*n, *b)).collect();
    let (agents, entries) = scripted(&runtime, &fleet, &behaviours);
    let args = rollout_args(
        &fleet,
        &entries,
        &["--max-unavailable", "100%", "--max-failures", "100%", "--node-timeout-secs", "8", "--timeout-secs", "2"],
    );
    let started = Instant::now();
    let peak_file = fleet.dir.path().join("peak-rss");
    let mut coordinator = Coordinator::start_measured(&args, &peak_file);
    let status = coordinator.finish(Duration::from_secs(90)).expect("the rollout ends by itself");
    let took = started.elapsed();
    let peak: u64 = std::fs::read_to_string(&peak_file).expect("the peak memory").parse().expect("a number");
    // Two agents answer 200 MB or endless bodies: read whole, they alone would pass the bound.
    eprintln!("the coordinator's peak memory: {} KiB", peak / 1024);
    assert!(peak > 0 && peak < 150 * 1024 * 1024, "the coordinator's peak memory was {} MiB", peak / (1024 * 1024));
    assert_eq!(status.code(), Some(1), "errors make the exit code 1");
    let summary = coordinator.summary();
    assert_eq!(summary["counters"], serde_json::json!({"patched": 4, "skipped": 0, "pending": 0, "error": 18}));
    let outcomes = coordinator.outcomes();
    for (name, _, outcome, code) in &expected {
        let found = outcomes.get(*name).unwrap_or_else(|| panic!("{name} never finished: {outcomes:?}"));
        assert_eq!((found.0.as_str(), found.1.as_str()), (*outcome, *code), "{name}");
    }
    for name in ["worker-1", "worker-2"] {
        assert_eq!(outcomes.get(name).map(|o| o.0.as_str()), Some("patched"), "{name}: {outcomes:?}");
    }
    let errors = summary["errors"].as_array().expect("errors");
    let message = |node: &str| {
        errors.iter().find(|e| e["node"] == node).and_then(|e| e["message"].as_str()).unwrap_or("").to_owned()
    };
    assert!(message("unknown-code").contains("the node's quota is exhausted"), "{}", message("unknown-code"));
    assert!(message("elsewhere").contains("for another address"), "{}", message("elsewhere"));
    assert!(message("impostor").contains("impostor-impostor"), "{}", message("impostor"));
    assert!(message("stays-running").contains("deadline of 8s"), "{}", message("stays-running"));
    assert!(took < Duration::from_secs(60), "a deadline of 8 s per node, yet the rollout took {took:?}");
    assert_eq!(upgrades_run(&runtime, &fleet), [1, 1], "each real agent is upgraded once");
    let untouched = ["untrusted", "elsewhere", "impostor"];
    for (agent, (name, _)) in agents.iter().zip(&behaviours) {
        if untouched.contains(name) {
            assert_eq!(agent.upgrade_requests(), 0, "{name} was never asked to upgrade");
        }
    }
}

#[test]
fn a_stuck_node_neither_blocks_the_others_nor_a_sigterm() {
    let runtime = runtime();
    let fleet = real_fleet(&runtime);
    let (_agents, entries) = scripted(&runtime, &fleet, &[("stuck", Behaviour::StaysRunning)]);
    // The stuck node comes first in the inventory; the limit leaves room for it and one more.
    let args = rollout_args(
        &fleet,
        &entries,
        &["--max-unavailable", "2", "--node-timeout-secs", "600", "--stop-timeout-secs", "2"],
    );
    let mut coordinator = Coordinator::start(&args);
    let both_patched = |seen: &[(Instant, serde_json::Value)]| {
        seen.iter().filter(|(_, l)| l["event"] == "node_finished" && l["outcome"] == "patched").count() == 2
    };
    assert!(coordinator.read_until(Duration::from_secs(60), both_patched), "{:?}", coordinator.seen);
    let signalled = Instant::now();
    kill(Pid::from_raw(i32::try_from(coordinator.child.id()).expect("pid")), Signal::SIGTERM).expect("SIGTERM");
    let status = coordinator.finish(Duration::from_secs(30)).expect("a SIGTERM ends the rollout");
    let waited = signalled.elapsed();
    assert_eq!(status.code(), Some(2), "a node left pending makes the exit code 2");
    let summary = coordinator.summary();
    assert_eq!(summary["counters"], serde_json::json!({"patched": 2, "skipped": 0, "pending": 1, "error": 0}));
    assert_eq!(summary["halt"]["reason"], "stop_wait_ended", "{summary}");
    assert!(waited >= Duration::from_secs(2), "the running node had its 2 s, not {waited:?}");
    assert!(waited < Duration::from_secs(20), "the stop wait is 2 s, yet the coordinator took {waited:?}");
}

#[test]
fn after_a_sigkill_the_journal_lists_every_node_that_finished_before() {
    let runtime = runtime();
    let fleet = real_fleet(&runtime);
    let behaviours = [
        ("stuck", Behaviour::StaysRunning),
        ("wrong-kind", Behaviour::WrongKind),
        ("unchanged", Behaviour::SucceedsWithoutChange),
        ("busy-once", Behaviour::Busy { times: 1 }),
    ];
    let (_agents, entries) = scripted(&runtime, &fleet, &behaviours);
    let args = rollout_args(
        &fleet,
        &entries,
        &["--max-unavailable", "100%", "--max-failures", "100%", "--node-timeout-secs", "600"],
    );
    let journal_path = fleet.journal();
    let mut coordinator = Coordinator::start(&args);
    let finished =
        |seen: &[(Instant, serde_json::Value)]| seen.iter().filter(|(_, l)| l["event"] == "node_finished").count() == 5;
    assert!(coordinator.read_until(Duration::from_secs(60), finished), "{:?}", coordinator.seen);
    // The journal promises 250 ms plus one turn of the loop; give it a second.
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = Instant::now();
    coordinator.child.kill().expect("SIGKILL");
    let _ = coordinator.child.wait();
    let journals = JournalStore::open_file(journal_path.as_ref()).expect("the journal opens after the kill");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let journal = runtime.block_on(journals.load()).expect("the journal loads");
    let status_of =
        |name: &str| journal.nodes.iter().find(|n| n.name.as_str() == name).map(|n| n.status).expect("listed");
    for (arrived, line) in coordinator.seen.iter().filter(|(_, l)| l["event"] == "node_finished") {
        assert!(killed_at.duration_since(*arrived) >= Duration::from_secs(1));
        let name = line["node"].as_str().expect("node");
        let expected = if line["outcome"] == "patched" { NodeStatus::Patched } else { NodeStatus::Failed };
        assert_eq!(status_of(name), expected, "{name} finished before the kill");
    }
    assert_eq!(status_of("stuck"), NodeStatus::InFlight, "the stuck node is still in flight");
}

#[test]
fn status_says_why_each_unreadable_node_cannot_be_read() {
    let runtime = runtime();
    let fleet = real_fleet(&runtime);
    let behaviours = [
        ("unavailable", Behaviour::Unavailable { times: usize::MAX }),
        ("unreadable", Behaviour::UnreadableBody),
        ("redirects", Behaviour::Redirect),
        ("elsewhere", Behaviour::CertificateForAnotherAddress),
        ("impostor", Behaviour::WrongNodeName),
        ("unknown-code", Behaviour::UnknownErrorCode),
        ("closes-connections", Behaviour::ClosesEveryConnection),
    ];
    let (_agents, entries) = scripted(&runtime, &fleet, &behaviours);
    let inventory = fleet.write_inventory(&entries).display().to_string();
    let run = |output: &str| {
        Command::new(binaries::path("upkeep"))
            .args(["status", "--inventory", &inventory, "--timeout-secs", "3", "--output", output])
            .output()
            .expect("upkeep runs")
    };
    let table = run("human");
    assert_eq!(table.status.code(), Some(2), "unreadable nodes make the exit code 2");
    let text = String::from_utf8_lossy(&table.stdout);
    let row = |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or("").to_owned();
    for (name, label) in [
        ("worker-1", "Idle"),
        ("unavailable", "Error(dependency_unavailable)"),
        ("unreadable", "BadAnswer"),
        ("redirects", "Redirected"),
        ("elsewhere", "CertificateProblem"),
        ("impostor", "WrongNode"),
        ("unknown-code", "Error(quota_exhausted)"),
        ("closes-connections", "Unreachable"),
    ] {
        assert!(row(name).contains(label), "{name} should say {label}:\n{text}");
    }
    assert!(text.contains("the node's quota is exhausted"), "the agent's own message is kept:\n{text}");
    let json: serde_json::Value = serde_json::from_slice(&run("json").stdout).expect("JSON");
    let rows = json.as_array().expect("rows");
    let code =
        |name: &str| rows.iter().find(|r| r["name"] == name).map(|r| r["unreadable"]["code"].clone()).expect("a row");
    assert_eq!(code("unavailable"), "dependency_unavailable");
    assert_eq!(code("impostor"), "node_name_mismatch");
    assert_eq!(code("worker-2"), serde_json::Value::Null);
}

#[test]
fn status_lists_every_node_in_inventory_order_while_a_silent_one_is_waited_for() {
    let runtime = runtime();
    let fleet = real_fleet(&runtime);
    let behaviours =
        [("silent", Behaviour::NeverAnswers), ("honest-1", Behaviour::Honest), ("honest-2", Behaviour::Honest)];
    let (_agents, entries) = scripted(&runtime, &fleet, &behaviours);
    let inventory = fleet.write_inventory(&entries);
    let listed: Vec<String> = std::fs::read_to_string(&inventory)
        .expect("the inventory")
        .lines()
        .filter_map(|line| line.strip_prefix("name = \"").and_then(|rest| rest.strip_suffix('"')))
        .map(str::to_owned)
        .collect();
    assert!(listed.len() > behaviours.len(), "the real nodes are listed too: {listed:?}");
    let inventory = inventory.display().to_string();
    // Two at a time: the silent node answers only with its timeout, and the nodes after it are read meanwhile.
    let args = ["status", "--inventory", &inventory, "--timeout-secs", "2", "--concurrency", "2", "--output", "json"];
    let run = Command::new(binaries::path("upkeep")).args(args).output().expect("upkeep runs");
    assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    let json: serde_json::Value = serde_json::from_slice(&run.stdout).expect("one JSON array");
    let rows = json.as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|row| row["name"].as_str()).collect();
    assert_eq!(names, listed, "every node once, in inventory order");
    for row in rows {
        match row["name"].as_str() {
            Some("silent") => assert_eq!(row["unreadable"]["code"], "timeout", "{row:#}"),
            _ => assert!(row["state"].is_object(), "every other node was read: {row:#}"),
        }
    }
}
