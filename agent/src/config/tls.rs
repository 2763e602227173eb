//! `[tls]`: the paths of the server's certificate, key and client CA.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
pub use upkeep_net::TlsPaths;

use super::problems::Problems;

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    reload_interval_secs: Option<u64>,
}

pub(super) fn validate_tls(raw: Option<RawTls>, problems: &mut Problems) -> Option<TlsPaths> {
    let Some(raw) = raw else {
        problems.add("tls", "is required (cert, key and client_ca)");
        return None;
    };
    let cert = problems.absolute_path("tls.cert", raw.cert);
    let key = problems.absolute_path("tls.key", raw.key);
    let client_ca = problems.absolute_path("tls.client_ca", raw.client_ca);
    let reload_interval = match raw.reload_interval_secs {
        None => Some(Duration::from_secs(30)),
        Some(0) => None,
        Some(secs) => {
            Some(problems.seconds("tls.reload_interval_secs", Some(secs), Duration::from_secs(30), (1, 86_400)))
        }
    };
    Some(TlsPaths { cert: cert?, key: key?, client_ca: client_ca?, reload_interval })
}
