//! The `upkeep` command line: fleet operations against upkeep agents.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use upkeep_common::Role;
use upkeep_coordinator::certs::{self, CertificateAuthority, CertsError, Validity};

/// Roll node binaries across a Kubernetes fleet, safely.
#[derive(Debug, Parser)]
#[command(name = "upkeep", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create development certificates (a CA, node server certificates, client certificates).
    #[command(subcommand)]
    Certs(CertsCommand),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Certs(command) => run_certs(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("upkeep: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_certs(command: CertsCommand) -> Result<(), CertsError> {
    match command {
        CertsCommand::Ca { common, name } => {
            std::fs::create_dir_all(&common.dir)
                .map_err(|source| CertsError::Io { path: common.dir.clone(), source })?;
            let ca = CertificateAuthority::generate(&name, Validity::days_from_now(common.days))?;
            certs::write_file(&common.dir.join("ca.key"), ca.key_pem(), 0o600, common.overwrite)?;
            certs::write_file(&common.dir.join("ca.crt"), ca.cert_pem(), 0o644, common.overwrite)?;
            println!("wrote {}", common.dir.join("ca.crt").display());
        }
        CertsCommand::Server { common, name, sans } => {
            let ca = CertificateAuthority::load(&common.dir)?;
            let issued = ca.issue_server(&name, &sans, Validity::days_from_now(common.days))?;
            let (cert, _) = certs::write_issued(&common.dir, &name, &issued, common.overwrite)?;
            println!("wrote {}", cert.display());
        }
        CertsCommand::Client { common, name, role } => {
            let ca = CertificateAuthority::load(&common.dir)?;
            let issued = ca.issue_client(&name, role.role(), Validity::days_from_now(common.days))?;
            let (cert, _) = certs::write_issued(&common.dir, &name, &issued, common.overwrite)?;
            println!("wrote {}", cert.display());
        }
    }
    Ok(())
}
