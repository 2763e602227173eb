//! Runs a command and writes its peak resident memory (the process's own
//! high-water mark, in bytes) to a file: `upkeep-peak-rss OUT PROGRAM ARGS...`.
//! Its only child is the command, so the children's high-water mark is the
//! command's. Exits with the command's exit code. Never shipped.

use std::process::{Command, ExitCode};

use nix::sys::resource::{UsageWho, getrusage};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), Some(program)) = (args.next(), args.next()) else {
        eprintln!("usage: upkeep-peak-rss OUT PROGRAM [ARGS...]");
        return ExitCode::from(64);
    };
    let status = match Command::new(&program).args(args).status() {
        Ok(status) => status,
        Err(error) => {
            eprintln!("upkeep-peak-rss: cannot run {}: {error}", program.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let peak = getrusage(UsageWho::RUSAGE_CHILDREN).map(|usage| usage.max_rss()).unwrap_or(0);
    let bytes = u64::try_from(peak).unwrap_or(0).saturating_mul(1024);
    if let Err(error) = std::fs::write(&out, bytes.to_string()) {
        eprintln!("upkeep-peak-rss: cannot write {}: {error}", out.to_string_lossy());
        return ExitCode::from(74);
    }
    ExitCode::from(u8::try_from(status.code().unwrap_or(128)).unwrap_or(1))
}
