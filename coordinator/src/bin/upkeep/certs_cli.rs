//! `upkeep certs`: development CA, server and client certificates.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use upkeep_common::Role;
use upkeep_coordinator::certs::{self, CertificateAuthority, Validity};

use super::Failure;

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
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
        /// Hold the role on this cluster of the service only (`upkeep:ROLE:CLUSTER`).
        #[arg(long, value_name = "CLUSTER")]
        cluster: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct CertsArgs {
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
pub enum RoleArg {
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

pub fn run_certs(command: CertsCommand) -> Result<(), Failure> {
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
        CertsCommand::Client { common, name, role, cluster } => {
            let ca = CertificateAuthority::load(&common.dir).map_err(text)?;
            let organization = match (role.role(), cluster) {
                (Some(role), Some(cluster)) => Some(format!("{}:{cluster}", role.organization())),
                (Some(role), None) => Some(role.organization().to_owned()),
                (None, Some(_)) => return Err("--cluster needs a role".to_owned()),
                (None, None) => None,
            };
            let validity = Validity::days_from_now(common.days);
            let issued = ca.issue_client_with_organization(&name, organization.as_deref(), validity).map_err(text)?;
            let (cert, _) = certs::write_issued(&common.dir, &name, &issued, common.overwrite).map_err(text)?;
            println!("wrote {}", cert.display());
        }
    }
    Ok(())
}
