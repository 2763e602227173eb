//! The `upkeep-agent` command line: parse it and the config, then run until
//! SIGTERM or SIGINT (SIGHUP reloads the TLS credentials).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::config::AgentConfig;

/// Node-side upgrade agent for Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "upkeep-agent", version)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, value_name = "FILE", default_value = "/etc/upkeep/agent.toml")]
    config: PathBuf,
    /// Validate the configuration and everything it names (TLS files, kubeconfig,
    /// component binaries), print every problem, and exit.
    #[arg(long)]
    check_config: bool,
}

/// Runs the agent as its command line asks.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match AgentConfig::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("upkeep-agent: {error}");
            return ExitCode::FAILURE;
        }
    };
    if cli.check_config {
        return check_config(&cli.config, &config);
    }
    upkeep_net::log::init_stderr("info");
    // One thread runs the agent: it mostly waits on the network and on its
    // node, and its few clients need no more; blocking file work goes to
    // tokio's blocking threads, which start on demand and end when idle. The
    // work-stealing runtime would keep a worker per core (each with its stack
    // and allocator arena) and touch far more code, on every node.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("upkeep-agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "agent could not start");
            eprintln!("upkeep-agent: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Checks that everything `config` names loads; prints every problem by key.
fn check_config(path: &Path, config: &AgentConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("upkeep-agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let problems = runtime.block_on(crate::config_check::check(config));
    if problems.is_empty() {
        println!("{}: configuration is valid", path.display());
        return ExitCode::SUCCESS;
    }
    eprintln!("upkeep-agent: {} has {} problem(s):", path.display(), problems.len());
    for problem in &problems {
        eprintln!("  - {problem}");
    }
    ExitCode::FAILURE
}
