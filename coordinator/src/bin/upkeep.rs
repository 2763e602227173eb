//! The `upkeep` command line: fleet status, rollouts (start, resume, pause,
//! abort), and development certificates.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;
use upkeep_common::api::Artifact;
use upkeep_common::{Role, Version};
use upkeep_coordinator::certs::{self, CertificateAuthority, Validity};
use upkeep_coordinator::client::AgentClient;
use upkeep_coordinator::control::{Control, write_control};
use upkeep_coordinator::inventory::Inventory;
use upkeep_coordinator::plan::{Limit, Limits, dry_run_waves};
use upkeep_coordinator::report::{EventSink, Human, JsonLines, Summary};
use upkeep_coordinator::rollout::{DriverSettings, Rollout, RolloutSpec, RolloutStorage};
use upkeep_coordinator::status::{fleet_status, table};

/// Roll node binaries across a Kubernetes fleet, safely.
#[derive(Debug, Parser)]
#[command(name = "upkeep", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show every node's versions, phase and last operation.
    Status(StatusArgs),
    /// Upgrade the fleet in waves (or resume, pause, abort a rollout).
    Rollout(Box<RolloutCli>),
    /// Create development certificates (a CA, node server certificates, client certificates).
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Output {
    /// A table or progress for a person.
    Human,
    /// JSON (one object per line for rollouts).
    Json,
}

#[derive(Debug, Args)]
struct Connection {
    /// The inventory file (nodes and TLS files); repeat to join the shards of one fleet.
    #[arg(long, value_name = "FILE", required = true)]
    inventory: Vec<PathBuf>,
    /// Nodes asked at once (1 to 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    concurrency: u16,
    /// Seconds allowed for one call to an agent (1 to 3600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_secs: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Human)]
    output: Output,
}

#[derive(Debug, Args)]
struct StatusArgs {
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct RolloutCli {
    #[command(subcommand)]
    command: Option<RolloutCommand>,
    #[command(flatten)]
    start: RolloutArgs,
}

impl RolloutCli {
    fn into_parts(self) -> (Option<RolloutCommand>, RolloutArgs) {
        (self.command, self.start)
    }
}

#[derive(Debug, Subcommand)]
enum RolloutCommand {
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
struct RolloutArgs {
    #[command(flatten)]
    connection: Connection,
    /// The target version.
    #[arg(long = "to", value_name = "VERSION", required = true)]
    to: Option<Version>,
    /// The artifacts file (TOML: [[artifacts]] component, source, sha256, signature).
    #[arg(long, value_name = "FILE", required = true)]
    artifacts: Option<PathBuf>,
    /// Nodes that may be unavailable at once: a count or a percentage.
    #[arg(long, default_value = "1")]
    max_unavailable: Limit,
    /// Failures tolerated before no new node starts: a count or a percentage.
    #[arg(long, default_value = "0")]
    max_failures: Limit,
    /// Nodes of one zone (label `zone`) in flight at once.
    #[arg(long)]
    per_zone: Option<usize>,
    /// Seconds a patched node must stay Ready before its slot is reused.
    #[arg(long, default_value_t = 0)]
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
struct DriverArgs {
    /// Milliseconds between polls of a running operation, for an agent that
    /// answers at once instead of holding its answer until the operation ends.
    #[arg(long, default_value_t = 200)]
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

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Create a CA as DIR/ca.crt and DIR/ca.key.
    Ca {
        #[command(flatten)]
        common: CertsArgs,
        /// The CA's common name.
        #[arg(long, default_value = "upkeep development CA")]
        name: String,
    },
    /// Issue a node's server certificate as DIR/NAME.crt and DIR/NAME.key.
    Server {
        #[command(flatten)]
        common: CertsArgs,
        /// The node name (the certificate's common name and file name).
        #[arg(long)]
        name: String,
        /// An IP address or DNS name the node is reached at; repeat for several.
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
    },
    /// Issue a client certificate carrying a role as DIR/NAME.crt and DIR/NAME.key.
    Client {
        #[command(flatten)]
        common: CertsArgs,
        /// The client's common name (and file name).
        #[arg(long)]
        name: String,
        /// The role written into the Subject O value.
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory holding ca.crt and ca.key, where new files are written.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Days the certificate stays valid.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Reader,
    Operator,
    Admin,
    /// No upkeep role at all (every request but /healthz is refused).
    None,
}

impl RoleArg {
    fn role(self) -> Option<Role> {
        match self {
            RoleArg::Reader => Some(Role::Reader),
            RoleArg::Operator => Some(Role::Operator),
            RoleArg::Admin => Some(Role::Admin),
            RoleArg::None => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArtifactsFile {
    artifacts: Vec<Artifact>,
}

/// A failure of the command itself (not of a node).
type Failure = String;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .fmt_fields(upkeep_net::log::EscapingFields)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Certs(command) => run_certs(command).map(|()| ExitCode::SUCCESS),
        Command::Status(args) => with_runtime(run_status(args)),
        Command::Rollout(rollout) => match (*rollout).into_parts() {
            (Some(RolloutCommand::Pause { journal }), _) => control(&journal, Control::Pause),
            (Some(RolloutCommand::Abort { journal }), _) => control(&journal, Control::Abort),
            (Some(RolloutCommand::Resume { connection, journal, driver }), _) => {
                with_runtime(run_resume(connection, journal, driver))
            }
            (None, args) => with_runtime(run_rollout(args)),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("upkeep: {error}");
            ExitCode::FAILURE
        }
    }
}

fn with_runtime(job: impl std::future::Future<Output = Result<ExitCode, Failure>>) -> Result<ExitCode, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(job)
}

fn connect(connection: &Connection) -> Result<(Inventory, AgentClient), Failure> {
    let inventory = Inventory::load_all(&connection.inventory).map_err(|e| e.to_string())?;
    let client = AgentClient::for_inventory(&inventory, Duration::from_secs(connection.timeout_secs))
        .map_err(|e| e.to_string())?;
    Ok((inventory, client))
}

async fn run_status(args: StatusArgs) -> Result<ExitCode, Failure> {
    let (inventory, client) = connect(&args.connection)?;
    let rows = fleet_status(&client, &inventory, usize::from(args.connection.concurrency)).await;
    match args.connection.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?),
        Output::Human => println!("{}", table(&rows)),
    }
    let unreachable = rows.iter().filter(|row| row.state.is_none()).count();
    Ok(if unreachable == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
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

async fn run_rollout(args: RolloutArgs) -> Result<ExitCode, Failure> {
    let missing = || "upkeep rollout needs --inventory, --to and --artifacts (see --help)".to_owned();
    let (Some(target), Some(artifacts)) = (args.to.clone(), args.artifacts.clone()) else {
        return Err(missing());
    };
    let connection = &args.connection;
    if connection.inventory.is_empty() {
        return Err(missing());
    }
    let artifacts = read_artifacts(&artifacts)?;
    if args.dry_run {
        let inventory = Inventory::load_all(&connection.inventory).map_err(|e| e.to_string())?;
        return print_plan(&inventory, &target, &args);
    }
    let (inventory, client) = connect(connection)?;
    let spec = RolloutSpec {
        id: None,
        target,
        artifacts,
        artifacts_by_arch: Default::default(),
        node_arch: Default::default(),
        max_unavailable: args.max_unavailable,
        max_failures: args.max_failures,
        per_zone: args.per_zone,
        soak: Duration::from_secs(args.soak),
        prestage: args.prestage,
    };
    let settings = driver_settings(connection, &args.driver);
    let storage = RolloutStorage::file(&args.journal).map_err(|e| e.to_string())?;
    let mut rollout = Rollout::new(client, &inventory, spec, storage, settings).await.map_err(|e| e.to_string())?;
    drive(&mut rollout, connection.output).await
}

async fn run_resume(connection: Connection, journal: PathBuf, driver: DriverArgs) -> Result<ExitCode, Failure> {
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
        poll_interval: Duration::from_millis(driver.poll_ms.clamp(1, 60_000)),
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
        soak_ms: args.soak * 1000,
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

fn control(journal: &Path, control: Control) -> Result<ExitCode, Failure> {
    write_control(journal, control).map_err(|e| e.to_string())?;
    let what = if control == Control::Pause { "pause" } else { "abort" };
    println!("asked the rollout of {} to {what}: no new node will start", journal.display());
    Ok(ExitCode::SUCCESS)
}

fn run_certs(command: CertsCommand) -> Result<(), Failure> {
    let text = |e: certs::CertsError| e.to_string();
    match command {
        CertsCommand::Ca { common, name } => {
            std::fs::create_dir_all(&common.dir).map_err(|e| format!("{}: {e}", common.dir.display()))?;
            let ca = CertificateAuthority::generate(&name, Validity::days_from_now(common.days)).map_err(text)?;
            certs::write_file(&common.dir.join("ca.key"), ca.key_pem(), 0o600, common.overwrite).map_err(text)?;
            certs::write_file(&common.dir.join("ca.crt"), ca.cert_pem(), 0o644, common.overwrite).map_err(text)?;
            println!("wrote {}", common.dir.join("ca.crt").display());
        }
        CertsCommand::Server { common, name, sans } => {
            let ca = CertificateAuthority::load(&common.dir).map_err(text)?;
            let issued = ca.issue_server(&name, &sans, Validity::days_from_now(common.days)).map_err(text)?;
            let (cert, _) = certs::write_issued(&common.dir, &name, &issued, common.overwrite).map_err(text)?;
            println!("wrote {}", cert.display());
        }
        CertsCommand::Client { common, name, role } => {
            let ca = CertificateAuthority::load(&common.dir).map_err(text)?;
            let issued = ca.issue_client(&name, role.role(), Validity::days_from_now(common.days)).map_err(text)?;
            let (cert, _) = certs::write_issued(&common.dir, &name, &issued, common.overwrite).map_err(text)?;
            println!("wrote {}", cert.display());
        }
    }
    Ok(())
}
