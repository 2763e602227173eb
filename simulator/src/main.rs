//! The `upkeep-sim` command: `run` a simulated rollout with the given fleet,
//! limits, latencies and faults, or `demo` one on built-in defaults; `serve`
//! a shard of a fleet or a `fake-apiserver` for an agent of its own.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use upkeep_common::Version;
use upkeep_coordinator::plan::Limit;
use upkeep_simulator::fake_apiserver::{self, FakeApiConfig};
use upkeep_simulator::faults::{FaultKind, LatencyRange};
use upkeep_simulator::report::html;
use upkeep_simulator::run::{Driver, RunConfig, run};
use upkeep_simulator::serve::{ServeConfig, serve};

/// Simulate a fleet of upkeep agents and roll it with the real coordinator.
#[derive(Debug, Parser)]
#[command(name = "upkeep-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one simulated rollout.
    Run(Box<RunArgs>),
    /// Host one shard of a fleet (no coordinator) and write its inventory, until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Serve the fake Kubernetes API server with one Node and write a kubeconfig for an agent, until SIGINT or SIGTERM.
    FakeApiserver(FakeApiArgs),
    /// Run a rollout of about a thousand nodes with a few faults, on built-in defaults.
    Demo {
        /// Where to write the JSON report.
        #[arg(long, default_value = "upkeep-sim-report.json")]
        json: PathBuf,
        /// Where to write the HTML report.
        #[arg(long, default_value = "upkeep-sim-report.html")]
        html: PathBuf,
        /// The seed (random when absent; printed first).
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct FakeApiArgs {
    /// Where to listen, as ADDRESS:PORT.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Directory the kubeconfig is written into.
    #[arg(long)]
    dir: PathBuf,
    /// The version the API server reports.
    #[arg(long, default_value = "v1.30.9")]
    version: String,
    /// The Node the API server holds.
    #[arg(long, default_value = "worker-1")]
    node: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Nodes in the whole fleet.
    #[arg(long)]
    nodes: usize,
    /// This shard and the number of shards, as I/N (0-based): `0/4` hosts the first quarter.
    #[arg(long, default_value = "0/1")]
    shard: String,
    /// Directory for the shared CA, the coordinator's certificate, `inventory-I.toml` and `artifacts.toml`.
    #[arg(long)]
    dir: PathBuf,
    /// Control-plane nodes (the first ones of the fleet).
    #[arg(long, default_value_t = 3)]
    control_planes: usize,
    /// Zones the nodes are spread over.
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// The version the fleet starts at.
    #[arg(long, default_value = "v1.30.2")]
    from: Version,
    /// The version the artifact installs.
    #[arg(long, default_value = "v1.30.3")]
    to: Version,
    /// The fault plan's seed (the same for every shard).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The probability that a node has a fault.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// Each step's latency in milliseconds: MS or LOW:HIGH.
    #[arg(long, default_value = "0")]
    latency_ms: LatencyRange,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Fake nodes.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Control-plane nodes among them.
    #[arg(long, default_value_t = 3)]
    control_planes: usize,
    /// Zones the nodes are spread over.
    #[arg(long, default_value_t = 3)]
    zones: usize,
    /// The seed (random when absent; printed first).
    #[arg(long)]
    seed: Option<u64>,
    /// The version the fleet starts at.
    #[arg(long, default_value = "v1.30.2")]
    from: Version,
    /// The rollout's target.
    #[arg(long, default_value = "v1.30.3")]
    to: Version,
    /// Nodes that may be unavailable at once: a count or a percentage.
    #[arg(long, default_value = "10%")]
    max_unavailable: Limit,
    /// Failures tolerated before no new node starts: a count or a percentage.
    #[arg(long, default_value = "10%")]
    max_failures: Limit,
    /// Nodes of one zone in flight at once.
    #[arg(long)]
    per_zone: Option<usize>,
    /// Stage artifacts everywhere first.
    #[arg(long)]
    prestage: bool,
    /// Each step's latency in milliseconds: MS or LOW:HIGH (uniform, per node from the seed).
    #[arg(long, default_value = "0")]
    latency_ms: LatencyRange,
    /// The probability that a node has a fault.
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
    /// The fault kinds to draw from (comma-separated); all when absent.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<FaultKind>,
    /// Nodes the coordinator asks at once when reading or prestaging.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Milliseconds between polls of a running operation, for an agent that
    /// answers at once instead of holding its answer until the operation ends.
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// What drives the rollout: the one-shot engine (`cli`) or the coordinator
    /// service through its HTTPS API (`service`).
    #[arg(long, value_enum, default_value_t = DriverArg::Cli)]
    driver: DriverArg,
    /// With `--driver service`: kill the service when this percentage of the
    /// nodes is done, and open a new one on the same store.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
    kill_coordinator_at: Option<u8>,
    /// Where to write the JSON report.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long)]
    html: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    upkeep_net::log::init_stderr("error");
    let (config, json, html_path) = match cli.command {
        Command::Serve(args) => return serve_shard(*args),
        Command::FakeApiserver(args) => return serve_fake_api(args),
        Command::Run(args) => {
            let args = *args;
            let config = RunConfig {
                nodes: args.nodes.max(1),
                control_planes: args.control_planes,
                zones: args.zones.max(1),
                seed: args.seed.unwrap_or_else(rand::random),
                from: args.from,
                to: args.to,
                max_unavailable: args.max_unavailable,
                max_failures: args.max_failures,
                per_zone: args.per_zone,
                prestage: args.prestage,
                latency: args.latency_ms,
                fault_rate: args.fault_rate.clamp(0.0, 1.0),
                fault_kinds: if args.faults.is_empty() { FaultKind::ALL.to_vec() } else { args.faults },
                concurrency: args.concurrency.max(1),
                poll_interval: Duration::from_millis(args.poll_ms.max(1)),
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
                driver: match args.driver {
                    DriverArg::Cli => Driver::Cli,
                    DriverArg::Service => Driver::Service,
                },
                kill_coordinator_at: args.kill_coordinator_at,
                ..RunConfig::demo(0)
            };
            if config.kill_coordinator_at.is_some() && config.driver != Driver::Service {
                eprintln!("upkeep-sim: --kill-coordinator-at needs --driver service");
                return ExitCode::FAILURE;
            }
            (config, args.json, args.html)
        }
        Command::Demo { json, html, seed } => (demo_config(seed.unwrap_or_else(rand::random)), Some(json), Some(html)),
    };
    eprintln!("upkeep-sim: seed {} ({} nodes, fault rate {})", config.seed, config.nodes, config.fault_rate);
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("upkeep-sim: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    let report = match runtime.block_on(run(&config)) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("upkeep-sim: {error}");
            return ExitCode::FAILURE;
        }
    };
    upkeep_simulator::report::summary::print_summary(&report);
    if let Some(path) = &json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => report_written(std::fs::write(path, text + "\n"), path),
            Err(error) => eprintln!("upkeep-sim: report: {error}"),
        }
    }
    if let Some(path) = &html_path {
        report_written(std::fs::write(path, html::render(&report)), path);
    }
    if report.checks.passed {
        ExitCode::SUCCESS
    } else {
        eprintln!("upkeep-sim: checks FAILED; reproduce with --seed {}", report.seed);
        ExitCode::FAILURE
    }
}

fn serve_shard(args: ServeArgs) -> ExitCode {
    let shard = args
        .shard
        .split_once('/')
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)))
        .filter(|(i, n)| *n > 0 && i < n);
    let Some(shard) = shard else {
        eprintln!("upkeep-sim: --shard must be I/N with 0 <= I < N, got {:?}", args.shard);
        return ExitCode::FAILURE;
    };
    let config = ServeConfig {
        nodes: args.nodes.max(1),
        control_planes: args.control_planes,
        zones: args.zones.max(1),
        shard,
        dir: args.dir,
        from: args.from,
        to: args.to,
        seed: args.seed,
        fault_rate: args.fault_rate.clamp(0.0, 1.0),
        fault_kinds: FaultKind::ALL.to_vec(),
        latency: args.latency_ms,
    };
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("upkeep-sim: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async {
        let ready = |inventory: &PathBuf| {
            println!("serving shard {}/{}; inventory: {}", shard.0, shard.1, inventory.display());
        };
        serve(&config, ready, termination()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("upkeep-sim: {error}");
            ExitCode::FAILURE
        }
    }
}

fn serve_fake_api(args: FakeApiArgs) -> ExitCode {
    let config = FakeApiConfig { listen: args.listen, dir: args.dir, version: args.version, node: args.node };
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("upkeep-sim: cannot start the runtime");
        return ExitCode::FAILURE;
    };
    runtime.block_on(async {
        match fake_apiserver::start(&config).await {
            Ok(started) => {
                println!(
                    "fake API server on https://{} with node {}; kubeconfig: {}",
                    started.server.addr,
                    config.node,
                    started.kubeconfig.display()
                );
                termination().await;
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("upkeep-sim: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Resolves at the first SIGINT or SIGTERM (at once when they cannot be watched).
async fn termination() {
    if let Ok(signalled) = upkeep_net::signals::termination() {
        signalled.await;
    }
}

fn demo_config(seed: u64) -> RunConfig {
    RunConfig { progress: std::io::IsTerminal::is_terminal(&std::io::stderr()), ..RunConfig::demo(seed) }
}

/// What drives the rollout.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DriverArg {
    /// The one-shot engine, as `upkeep rollout` runs it.
    Cli,
    /// The coordinator service, through its HTTPS API.
    Service,
}

fn report_written(result: std::io::Result<()>, path: &std::path::Path) {
    match result {
        Ok(()) => println!("report: {}", path.display()),
        Err(error) => eprintln!("upkeep-sim: cannot write {}: {error}", path.display()),
    }
}
