//! Runs the real `curl` and `openssl` command-line clients against an agent.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use crate::pki::Pki;

/// What curl got.
#[derive(Debug)]
pub struct CurlReply {
    /// curl's exit code (0 when a response arrived).
    pub exit_code: i32,
    /// The HTTP status, `None` when no response arrived.
    pub status: Option<u16>,
    /// Response headers, lowercased names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
    /// curl's error output.
    pub stderr: String,
}

impl CurlReply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// `curl` to `https://ADDR/path` trusting the test CA, as the client named
/// `client` (None: no client certificate), with extra arguments.
pub fn curl(pki: &Pki, addr: SocketAddr, client: Option<&str>, path: &str, extra: &[&str]) -> CurlReply {
    let mut command = Command::new("curl");
    command.args(["--silent", "--show-error", "--max-time", "20", "--include", "--cacert"]).arg(pki.ca_cert());
    if let Some(name) = client {
        let files = pki.client(name);
        command.arg("--cert").arg(&files.cert).arg("--key").arg(&files.key);
    }
    command.args(extra).arg(format!("https://{addr}{path}"));
    let output = command.output().expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (head, body) = stdout.split_once("\r\n\r\n").unwrap_or((stdout.as_str(), ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|line| line.split_whitespace().nth(1)).and_then(|code| code.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    CurlReply {
        exit_code: output.status.code().unwrap_or(-1),
        status,
        headers,
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// What `openssl s_client` printed and how it exited.
#[derive(Debug)]
pub struct OpensslReply {
    /// Exit code.
    pub exit_code: i32,
    /// Standard output and error together.
    pub output: String,
}

/// Runs `openssl s_client` against the agent with `args`, writing `input` to it.
pub fn openssl_s_client(pki: &Pki, addr: SocketAddr, client: Option<&str>, args: &[&str], input: &str) -> OpensslReply {
    let mut command = Command::new("openssl");
    command.arg("s_client").arg("-connect").arg(addr.to_string()).arg("-CAfile").arg(pki.ca_cert());
    if let Some(name) = client {
        let files = pki.client(name);
        command.arg("-cert").arg(&files.cert).arg("-key").arg(&files.key);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = child.wait_with_output().expect("openssl finishes");
    OpensslReply {
        exit_code: output.status.code().unwrap_or(-1),
        output: format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    }
}
