//! `upkeep rollout`: start, resume, pause or abort a rollout.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Deserialize;
use upkeep_common::Version;
use upkeep_common::api::Artifact;
use upkeep_coordinator::catalog::Catalog;
use upkeep_coordinator::control::{Control, write_control};
use upkeep_coordinator::inventory::Inventory;
use upkeep_coordinator::plan::{Limit, Limits, dry_run_waves};
use upkeep_coordinator::report::{EventSink, Human, JsonLines, Summary};
use upkeep_coordinator::rollout::{DriverSettings, Rollout, RolloutSpec, RolloutStorage};
use upkeep_coordinator::service::config::{MAX_PER_ZONE, MAX_SOAK};

use super::{Connection, Failure, Output, connect};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RolloutCli {
    #[command(subcommand)]
    command: Option<RolloutCommand>,
    #[command(flatten)]
    start: RolloutArgs,
}

impl RolloutCli {
    pub fn into_parts(self) -> (Option<RolloutCommand>, RolloutArgs) {
        (self.command, self.start)
    }
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Continue a rollout from its journal (after a kill, a pause or a signal).
    Resume {
        #[command(flatten)]
        connection: Connection,
        /// The rollout's journal.
        #[arg(long, default_value = "upkeep-rollout.json")]
        journal: PathBuf,
        #[command(flatten)]
        driver: DriverArgs,
    },
    /// Ask a running rollout to stop starting new nodes (running ones finish); resume later.
    Pause {
        /// The rollout's journal.
        #[arg(long, default_value = "upkeep-rollout.json")]
        journal: PathBuf,
    },
    /// Ask a running rollout to stop starting new nodes for good.
    Abort {
        /// The rollout's journal.
        #[arg(long, default_value = "upkeep-rollout.json")]
        journal: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    connection: Connection,
    /// The target version.
    #[arg(long = "to", value_name = "VERSION", required = true)]
    to: Option<Version>,
    /// The artifacts file (TOML: [[artifacts]] component, source, sha256, signature).
    #[arg(long, value_name = "FILE", required_unless_present = "catalog", conflicts_with = "catalog")]
    artifacts: Option<PathBuf>,
    /// The release catalog instead of an artifacts file: --to may then be
    /// MAJOR.MINOR (the newest patch of the catalog's channel), and each node
    /// installs its architecture's artifacts.
    #[arg(long, value_name = "FILE")]
    catalog: Option<PathBuf>,
    /// Nodes that may be unavailable at once: a count or a percentage.
    #[arg(long, default_value = "1")]
    max_unavailable: Limit,
    /// Failures tolerated before no new node starts: a count or a percentage.
    #[arg(long, default_value = "0")]
    max_failures: Limit,
    /// Nodes of one zone (label `zone`) in flight at once (1 to 100000).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=MAX_PER_ZONE))]
    per_zone: Option<usize>,
    /// Seconds a patched node must stay Ready before its slot is reused (0 to 86400).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=MAX_SOAK.as_secs()))]
    soak: u64,
    /// Stage the artifacts on every node first, then swap within the limits.
    #[arg(long)]
    prestage: bool,
    /// Print the plan (waves and order) without touching a node.
    #[arg(long)]
    dry_run: bool,
    /// Where the rollout's journal is written.
    #[arg(long, default_value = "upkeep-rollout.json")]
    journal: PathBuf,
    #[command(flatten)]
    driver: DriverArgs,
}

/// How the rollout follows nodes; the same for a start and a resume.
#[derive(Debug, Args)]
pub struct DriverArgs {
    /// Milliseconds between polls of a running operation, for an agent that
    /// answers at once instead of holding its answer until the operation ends
    /// (1 to 60000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    poll_ms: u64,
    /// Seconds one node's upgrade may take, from its request to the check of
    /// its versions, before it counts as an error (1 to 604800).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=604_800))]
    node_timeout_secs: u64,
    /// Seconds running nodes may still finish after SIGINT or SIGTERM; then the
    /// rollout ends and counts them as pending (resume asks them again).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=604_800))]
    stop_timeout_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsFile {
    artifacts: Vec<Artifact>,
}

fn read_artifacts(path: &Path) -> Result<Vec<Artifact>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: ArtifactsFile = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    if file.artifacts.is_empty() {
        return Err(format!("{}: at least one [[artifacts]] entry is required", path.display()));
    }
    Ok(file.artifacts)
}

fn sink_for(output: Output) -> Box<dyn EventSink> {
    match output {
        Output::Json => Box::new(JsonLines),
        Output::Human => Box::new(Human::new()),
    }
}

fn exit_code(summary: &Summary) -> ExitCode {
    match (summary.counters.error, summary.counters.pending) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

pub async fn run_rollout(args: RolloutArgs) -> Result<ExitCode, Failure> {
    let missing = || "upkeep rollout needs --inventory, --to and --artifacts or --catalog (see --help)".to_owned();
    let Some(asked) = args.to.clone() else {
        return Err(missing());
    };
    let connection = &args.connection;
    if connection.inventory.is_empty() {
        return Err(missing());
    }
    let (target, artifacts, artifacts_by_arch, images) = match (&args.catalog, &args.artifacts) {
        (Some(catalog), _) => {
            let catalog = Catalog::load(catalog).map_err(|e| e.to_string())?;
            let release = catalog.resolve(&asked.to_string()).map_err(|e| e.to_string())?;
            (release.version.clone(), Vec::new(), release.artifacts_by_arch(), release.image_artifacts())
        }
        (None, Some(artifacts)) => (asked, read_artifacts(artifacts)?, Default::default(), Vec::new()),
        (None, None) => return Err(missing()),
    };
    if args.dry_run {
        let inventory = Inventory::load_all(&connection.inventory).map_err(|e| e.to_string())?;
        return print_plan(&inventory, &target, &args);
    }
    let (inventory, client) = connect(connection)?;
    let spec = RolloutSpec {
        id: None,
        target,
        artifacts,
        artifacts_by_arch,
        node_arch: Default::default(),
        max_unavailable: args.max_unavailable,
        max_failures: args.max_failures,
        per_zone: args.per_zone,
        soak: Duration::from_secs(args.soak),
        prestage: args.prestage,
        images,
    };
    let settings = driver_settings(connection, &args.driver);
    let storage = RolloutStorage::file(&args.journal).map_err(|e| e.to_string())?;
    let mut rollout = Rollout::new(client, &inventory, spec, storage, settings).await.map_err(|e| e.to_string())?;
    drive(&mut rollout, connection.output).await
}

pub async fn run_resume(connection: Connection, journal: PathBuf, driver: DriverArgs) -> Result<ExitCode, Failure> {
    let (inventory, client) = connect(&connection)?;
    let settings = driver_settings(&connection, &driver);
    let storage = RolloutStorage::file(&journal).map_err(|e| e.to_string())?;
    let mut rollout = Rollout::resume(client, &inventory, storage, settings).await.map_err(|e| e.to_string())?;
    write_control(&journal, Control::Run).map_err(|e| e.to_string())?;
    drive(&mut rollout, connection.output).await
}

fn driver_settings(connection: &Connection, driver: &DriverArgs) -> DriverSettings {
    DriverSettings {
        concurrency: usize::from(connection.concurrency),
        poll_interval: Duration::from_millis(driver.poll_ms),
        node_timeout: Duration::from_secs(driver.node_timeout_secs),
        stop_timeout: Duration::from_secs(driver.stop_timeout_secs),
        ..DriverSettings::default()
    }
}

/// Runs a rollout; SIGINT or SIGTERM stops new nodes from starting, gives
/// running ones `--stop-timeout-secs` to finish, and leaves the journal for
/// `upkeep rollout resume`.
async fn drive(rollout: &mut Rollout, output: Output) -> Result<ExitCode, Failure> {
    let stop = rollout.stop_flag();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut interrupt)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        eprintln!("upkeep: stopping: no new node will start; running ones get a bounded time to finish");
        stop.store(true, Ordering::Relaxed);
    });
    let mut sink = sink_for(output);
    let summary = rollout.run(sink.as_mut()).await.map_err(|e| e.to_string())?;
    Ok(exit_code(&summary))
}

fn print_plan(inventory: &Inventory, target: &Version, args: &RolloutArgs) -> Result<ExitCode, Failure> {
    let total = inventory.nodes.len();
    let limits = Limits {
        max_unavailable: args.max_unavailable.resolve_nonzero(total).max(1),
        max_failures: args.max_failures.resolve(total),
        per_zone: args.per_zone,
        soak_ms: args.soak.saturating_mul(1000),
    };
    let roles: Vec<_> = inventory.nodes.iter().map(|n| (n.role, n.zone().map(str::to_owned))).collect();
    let waves: Vec<Vec<String>> = dry_run_waves(&roles, &limits)
        .into_iter()
        .map(|wave| wave.into_iter().map(|i| inventory.nodes[i].name.to_string()).collect())
        .collect();
    match args.connection.output {
        Output::Json => {
            let plan =
                serde_json::json!({"event": "plan", "target": target.to_string(), "limits": limits, "waves": waves});
            println!("{plan}");
        }
        Output::Human => {
            println!("plan to {target} for {total} nodes ({} at most unavailable):", limits.max_unavailable);
            for (number, wave) in waves.iter().enumerate() {
                println!("  wave {}: {}", number + 1, wave.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn control(journal: &Path, control: Control) -> Result<ExitCode, Failure> {
    write_control(journal, control).map_err(|e| e.to_string())?;
    let what = if control == Control::Pause { "pause" } else { "abort" };
    println!("asked the rollout of {} to {what}: no new node will start", journal.display());
    Ok(ExitCode::SUCCESS)
}
