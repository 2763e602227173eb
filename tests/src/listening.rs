//! Starting a server process and waiting until it says where it listens:
//! its stderr is captured line by line, and the address after
//! `listening on ` is the server's. The process is killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a test waits for a server to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server process with its captured log.
pub struct Listening {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far.
    pub log: Arc<Mutex<String>>,
}

/// Spawns `command` (its stderr captured) and waits until it listens.
pub fn spawn_listening(mut command: Command, what: &str) -> Listening {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap_or_else(|error| panic!("{what} does not start: {error}"));
    let stderr = child.stderr.take().expect("stderr is piped");
    let log = Arc::new(Mutex::new(String::new()));
    let (address_sender, address_receiver) = mpsc::channel();
    let log_writer = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = line.split("listening on ").nth(1) {
                let _ = address_sender.send(address.split_whitespace().next().unwrap_or_default().to_owned());
            }
            let mut log = log_writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            log.push_str(&line);
            log.push('\n');
        }
    });
    let address = match address_receiver.recv_timeout(START_TIMEOUT) {
        Ok(address) => address,
        Err(_) => {
            let _ = child.kill();
            let log = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
            panic!("{what} did not start listening within {START_TIMEOUT:?}; its log:\n{log}");
        }
    };
    let addr = address.parse().unwrap_or_else(|_| panic!("{what} printed a bad address {address:?}"));
    Listening { child, addr, log }
}

impl Listening {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid fits");
        kill(Pid::from_raw(pid), signal).expect("signal delivered");
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Everything the process wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.kill();
    }
}
