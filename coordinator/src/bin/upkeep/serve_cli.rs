//! `upkeep serve`: the long-running coordinator service, and `--check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use upkeep_coordinator::catalog::CatalogFile;
use upkeep_coordinator::inventory::Inventory;
use upkeep_coordinator::service::cluster::ServiceSettings;
use upkeep_coordinator::service::config::ServiceConfig;
use upkeep_coordinator::service::run::serve;

use super::Failure;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The service's config file.
    #[arg(long, value_name = "FILE", default_value = "/etc/upkeep/coordinator.toml")]
    config: PathBuf,
    /// Check the config, and every cluster's inventory and catalog, then exit.
    #[arg(long)]
    check_config: bool,
}

/// Runs the service, or checks its config.
pub fn run(args: ServeArgs) -> Result<ExitCode, Failure> {
    let config = ServiceConfig::load(&args.config).map_err(|e| e.to_string())?;
    if args.check_config {
        return check(&config);
    }
    super::with_runtime(async move {
        serve(config, ServiceSettings::default()).await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Reads every file the config names, reporting each cluster.
fn check(config: &ServiceConfig) -> Result<ExitCode, Failure> {
    let mut problems = Vec::new();
    for cluster in &config.clusters {
        let name = cluster.name.as_str();
        match Inventory::load_all(&cluster.inventory) {
            Ok(inventory) => println!("cluster {name}: {} nodes", inventory.nodes.len()),
            Err(error) => problems.push(format!("cluster {name}: {error}")),
        }
        match CatalogFile::open(cluster.catalog.clone()) {
            Ok(catalog) => println!("cluster {name}: {} releases in the catalog", catalog.current().releases.len()),
            Err(error) => problems.push(format!("cluster {name}: {error}")),
        }
    }
    for path in [&config.tls.cert, &config.tls.key, &config.tls.client_ca] {
        if let Err(error) = std::fs::metadata(path) {
            problems.push(format!("{}: {error}", path.display()));
        }
    }
    if problems.is_empty() {
        println!("the config is valid");
        return Ok(ExitCode::SUCCESS);
    }
    Err(problems.join("\n"))
}
