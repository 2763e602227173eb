//! `upkeep cluster ...`: the command line of the coordinator service's client
//! (list, status, upgrade, update, pause, resume, cancel), each answer as a
//! short table or as the service's JSON, and `--follow` with a progress bar
//! from the update's event stream.
//!
//! - [`render`]: the tables and lines a person reads.
//! - [`follow`]: an update followed to its end, and the exit code it gives.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::client::tls_config;
use crate::service::model::Update;
use crate::service_client::{PolicyOverrides, ServiceClient, ServiceSettings, UpgradeRequest};

pub mod follow;
pub mod render;

/// Talk to a running `upkeep serve`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The clusters the service manages.
    List {
        /// Where the service is and who calls it.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// One cluster: versions, counters, conditions, history and available updates.
    Status {
        /// The cluster.
        cluster: String,
        /// Where the service is and who calls it.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Start an update of a cluster to VERSION (`MAJOR.MINOR` takes the newest patch the catalog holds).
    Upgrade(UpgradeArgs),
    /// One update: its tasks, counters and errors.
    Update {
        /// The cluster.
        cluster: String,
        /// The update's id.
        id: String,
        /// Follow the update to its end with a progress bar; exit 0 when it succeeds, 1 when it fails, 2 when cancelled.
        #[arg(long)]
        follow: bool,
        /// Where the service is and who calls it.
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Stop starting nodes (running ones finish) until resumed.
    Pause(UpdateRef),
    /// Start nodes again after a pause.
    Resume(UpdateRef),
    /// Stop starting nodes for good; running ones finish.
    Cancel(UpdateRef),
}

/// Where the service is and how to prove who we are.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The service, as `https://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The CA that signed the service's certificate.
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// Our client certificate (its O values carry the role).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// Our client certificate's key.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
    pub output: OutputFormat,
    /// Seconds allowed for one call (1 to 3600).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// A short table for a person (a progress bar when following).
    Human,
    /// The service's JSON as it answered (one object per line when following).
    Json,
}

/// `upkeep cluster upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The cluster.
    pub cluster: String,
    /// `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// The idempotency token: the same token always answers with the same
    /// update. One is made up when none is given, so a retried call never
    /// starts a second update.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Override the incremental rule (admin; recorded as an accepted risk).
    #[arg(long)]
    pub force: bool,
    /// Check and plan only; no node is touched.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the update to its end with a progress bar; exit 0 when it succeeds, 1 when it fails, 2 when cancelled.
    #[arg(long)]
    pub follow: bool,
    /// The cluster's `ETag` from `status`: refused with 412 if its spec changed since.
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
    /// Fewer nodes unavailable at once than the policy allows (admin): `"2"` or `"5%"`.
    #[arg(long, value_name = "LIMIT")]
    pub max_unavailable: Option<String>,
    /// Fewer failures tolerated than the policy allows (admin).
    #[arg(long, value_name = "LIMIT")]
    pub max_failures: Option<String>,
    /// A longer soak than the policy's (admin): `"30s"`, `"5m"`.
    #[arg(long, value_name = "DURATION")]
    pub soak: Option<String>,
    /// Where the service is and who calls it.
    #[command(flatten)]
    pub server: ServerArgs,
}

impl UpgradeArgs {
    /// The request body, with `token` when none was given.
    pub fn request(&self, token: impl FnOnce() -> String) -> UpgradeRequest {
        let overrides = PolicyOverrides {
            max_unavailable: self.max_unavailable.clone(),
            max_failures: self.max_failures.clone(),
            soak: self.soak.clone(),
        };
        UpgradeRequest {
            target_version: self.version.clone(),
            request_token: Some(self.token.clone().unwrap_or_else(token)),
            force: self.force,
            dry_run: self.dry_run,
            policy: (overrides != PolicyOverrides::default()).then_some(overrides),
        }
    }
}

/// One update of one cluster.
#[derive(Debug, Args)]
pub struct UpdateRef {
    /// The cluster.
    pub cluster: String,
    /// The update's id.
    pub id: String,
    /// Where the service is and who calls it.
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs `command`; the exit code is 0 unless a followed update failed (1) or was cancelled (2).
pub async fn run(command: ClusterCommand) -> Result<ExitCode, String> {
    match command {
        ClusterCommand::List { server } => {
            let clusters = connect(&server)?.clusters().await.map_err(|e| e.to_string())?;
            print(server.output, &ClusterListOut { clusters: &clusters }, || render::clusters(&clusters))
        }
        ClusterCommand::Status { cluster, server } => {
            let tagged = connect(&server)?.cluster(&cluster).await.map_err(|e| e.to_string())?;
            print(server.output, &tagged.value, || render::cluster(&tagged.value, tagged.etag.as_deref()))
        }
        ClusterCommand::Upgrade(args) => {
            let service = connect(&args.server)?;
            let request = args.request(fresh_token);
            let answer =
                service.upgrade(&args.cluster, &request, args.if_match.as_deref()).await.map_err(|e| e.to_string())?;
            if args.follow && !args.dry_run {
                follow::print_start(args.server.output, &answer, &answer.update);
                return follow::follow(&service, &answer.update, args.server.output).await;
            }
            print(args.server.output, &answer, || render::update(&answer.update))
        }
        ClusterCommand::Update { cluster, id, follow, server } => {
            let service = connect(&server)?;
            let update = service.update(&cluster, &id).await.map_err(|e| e.to_string())?;
            if follow {
                follow::print_start(server.output, &update, &update);
                return follow::follow(&service, &update, server.output).await;
            }
            print(server.output, &update, || render::update(&update))
        }
        ClusterCommand::Pause(target) => control(target, Control::Pause).await,
        ClusterCommand::Resume(target) => control(target, Control::Resume).await,
        ClusterCommand::Cancel(target) => control(target, Control::Cancel).await,
    }
}

#[derive(Serialize)]
struct ClusterListOut<'a> {
    clusters: &'a [crate::service::view::ClusterView],
}

#[derive(Debug, Clone, Copy)]
enum Control {
    Pause,
    Resume,
    Cancel,
}

async fn control(target: UpdateRef, control: Control) -> Result<ExitCode, String> {
    let service = connect(&target.server)?;
    let answer: Result<Update, _> = match control {
        Control::Pause => service.pause(&target.cluster, &target.id).await,
        Control::Resume => service.resume(&target.cluster, &target.id).await,
        Control::Cancel => service.cancel(&target.cluster, &target.id).await,
    };
    let update = answer.map_err(|e| e.to_string())?;
    print(target.server.output, &update, || render::update(&update))
}

fn connect(server: &ServerArgs) -> Result<ServiceClient, String> {
    let tls = tls_config(&server.ca, &server.cert, &server.key).map_err(|e| e.to_string())?;
    let settings = ServiceSettings { timeout: Duration::from_secs(server.timeout_secs), ..ServiceSettings::default() };
    ServiceClient::new(&server.server, tls, settings).map_err(|e| e.to_string())
}

/// Prints `answer` as JSON, or `human` for a person.
fn print<T: Serialize>(output: OutputFormat, answer: &T, human: impl FnOnce() -> String) -> Result<ExitCode, String> {
    match output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(answer).map_err(|e| e.to_string())?),
        OutputFormat::Human => println!("{}", human()),
    }
    Ok(ExitCode::SUCCESS)
}

/// A request token no other upgrade carries: 128 random bits.
fn fresh_token() -> String {
    format!("cli-{}", hex::encode(rand::random::<[u8; 16]>()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClusterCommand,
    }

    const TLS: [&str; 8] =
        ["--server", "https://upkeep.example:8443", "--ca", "ca.crt", "--cert", "ops.crt", "--key", "ops.key"];

    fn parse(words: &[&str]) -> Result<ClusterCommand, clap::Error> {
        let args = ["upkeep-cluster"].iter().chain(words).chain(TLS.iter());
        Cli::try_parse_from(args).map(|cli| cli.command)
    }

    #[test]
    fn upgrade_takes_its_flags_and_the_connection() {
        let command = parse(&[
            "upgrade",
            "prod-eu",
            "1.31",
            "--token",
            "t-1",
            "--force",
            "--follow",
            "--max-unavailable",
            "10%",
            "--output",
            "json",
        ])
        .expect("parses");
        let ClusterCommand::Upgrade(args) = command else { panic!("an upgrade: {command:?}") };
        assert_eq!((args.cluster.as_str(), args.version.as_str()), ("prod-eu", "1.31"));
        assert!(args.force && args.follow && !args.dry_run);
        assert_eq!(args.server.server, "https://upkeep.example:8443");
        assert_eq!(args.server.key, PathBuf::from("ops.key"));
        assert_eq!(args.server.output, OutputFormat::Json);
        let request = args.request(|| unreachable!("a token was given"));
        assert_eq!(
            serde_json::to_value(&request).expect("serializes"),
            serde_json::json!({"target_version": "1.31", "request_token": "t-1", "force": true,
                "policy": {"max_unavailable": "10%"}})
        );
    }

    #[test]
    fn an_upgrade_without_a_token_gets_a_fresh_one() {
        let ClusterCommand::Upgrade(args) = parse(&["upgrade", "prod-eu", "1.31.2", "--dry-run"]).expect("parses")
        else {
            panic!("an upgrade")
        };
        let request = args.request(|| "made-up".into());
        assert_eq!(
            serde_json::to_value(&request).expect("serializes"),
            serde_json::json!({"target_version": "1.31.2", "request_token": "made-up", "dry_run": true})
        );
        let (first, second) = (fresh_token(), fresh_token());
        assert_ne!(first, second);
        assert_eq!(first.len(), "cli-".len() + 32);
    }

    #[test]
    fn every_subcommand_names_what_it_acts_on() {
        assert!(matches!(parse(&["list"]), Ok(ClusterCommand::List { .. })));
        assert!(
            matches!(parse(&["status", "prod-eu"]), Ok(ClusterCommand::Status { cluster, .. }) if cluster == "prod-eu")
        );
        assert!(matches!(
            parse(&["update", "prod-eu", "u-7", "--follow"]),
            Ok(ClusterCommand::Update { id, follow: true, .. }) if id == "u-7"
        ));
        for (word, check) in [("pause", 0), ("resume", 1), ("cancel", 2)] {
            let parsed = parse(&[word, "prod-eu", "u-7"]).expect(word);
            let which = match parsed {
                ClusterCommand::Pause(target) | ClusterCommand::Resume(target) | ClusterCommand::Cancel(target)
                    if target.id != "u-7" =>
                {
                    panic!("{word}: wrong id {}", target.id)
                }
                ClusterCommand::Pause(_) => 0,
                ClusterCommand::Resume(_) => 1,
                ClusterCommand::Cancel(_) => 2,
                other => panic!("{word}: {other:?}"),
            };
            assert_eq!(which, check, "{word}");
        }
        assert!(parse(&["pause", "prod-eu"]).is_err(), "pause needs the update's id");
        assert!(parse(&["upgrade", "prod-eu"]).is_err(), "upgrade needs a version");
        assert!(parse(&["list", "--output", "yaml"]).is_err(), "only human or json");
        assert!(
            Cli::try_parse_from(["upkeep-cluster", "list", "--server", "https://s:1"]).is_err(),
            "TLS files needed"
        );
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
