//! The `upkeep` command line: fleet status, rollouts (start, resume, pause,
//! abort), the service (`serve`), and development certificates.

mod certs_cli;
mod rollout_cli;
mod serve_cli;

use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use certs_cli::{CertsCommand, run_certs};
use clap::{Args, Parser, Subcommand, ValueEnum};
use rollout_cli::{RolloutCli, RolloutCommand, control, run_resume, run_rollout};
use serve_cli::ServeArgs;
use upkeep_coordinator::client::AgentClient;
use upkeep_coordinator::cluster_cli::{self, ClusterCommand};
use upkeep_coordinator::control::Control;
use upkeep_coordinator::inventory::Inventory;
use upkeep_coordinator::status::{write_json, write_table};

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
    /// Run the coordinator service that platforms call (or check its config).
    Serve(ServeArgs),
    /// Talk to a running `upkeep serve`: list, status, upgrade, update, pause, resume, cancel.
    #[command(subcommand)]
    Cluster(ClusterCommand),
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

/// A failure of the command itself (not of a node).
type Failure = String;

fn main() -> ExitCode {
    let cli = Cli::parse();
    upkeep_net::log::init_stderr("warn");
    let result = match cli.command {
        Command::Certs(command) => run_certs(command).map(|()| ExitCode::SUCCESS),
        Command::Serve(args) => serve_cli::run(args),
        Command::Cluster(command) => with_runtime(cluster_cli::run(command)),
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
    let concurrency = usize::from(args.connection.concurrency);
    let out = BufWriter::new(std::io::stdout());
    let unreadable = match args.connection.output {
        Output::Json => write_json(&client, &inventory, concurrency, out).await,
        Output::Human => write_table(&client, &inventory, concurrency, out).await,
    }
    .map_err(|error| format!("cannot write the status: {error}"))?;
    Ok(if unreadable == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
