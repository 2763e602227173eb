//! Fake components: shell scripts that answer `--version` like kubelet does, and
//! a health endpoint that answers for whichever script is installed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// The marker that makes the health endpoint fail for a script.
const UNHEALTHY: &str = "# upkeep-test: unhealthy";

/// A fake component's script: prints `Kubernetes VERSION` for `--version`; an
/// unhealthy one carries a marker that fails the health endpoint.
pub fn script(name: &str, version: &str, healthy: bool) -> String {
    let marker = if healthy { "" } else { UNHEALTHY };
    format!(
        "#!/bin/sh\n# fake {name} {version} for upkeep tests\n{marker}\nif [ \"$1\" = \"--version\" ]; then echo \"Kubernetes {version}\"; fi\nexit 0\n"
    )
}

/// Writes a healthy executable script at `dir/name`.
pub fn write(dir: &Path, name: &str, version: &str) -> PathBuf {
    write_script(&dir.join(name), &script(name, version, true))
}

/// Writes `text` as an executable file.
pub fn write_script(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write fake component");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake component");
    path.to_path_buf()
}

/// Serves `GET /healthz?binary=PATH[&refuse=VERSION]`: 200 when the script at
/// PATH is healthy, 503 when it carries the unhealthy marker, is missing, or is
/// the version to refuse. Returns the port.
pub async fn start_health_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind health server");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let query = request.uri().query().unwrap_or_default().to_owned();
                    let parameter = |name: &str| {
                        query.split('&').find_map(|pair| pair.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                    };
                    let binary = parameter("binary").unwrap_or_default();
                    let refused = parameter("refuse").map(|version| format!(" {version} "));
                    let healthy = std::fs::read_to_string(binary).is_ok_and(|text| {
                        !text.contains(UNHEALTHY)
                            && refused.as_ref().is_none_or(|version| !text.contains(version.as_str()))
                    });
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(if healthy { b"ok" } else { b"unhealthy" })));
                    if !healthy {
                        *response.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    port
}
