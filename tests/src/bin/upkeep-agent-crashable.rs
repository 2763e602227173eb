//! The agent as the durability tests run it: the product's command line, plus
//! a hook that kills the process with SIGKILL at the crash point named by
//! `UPKEEP_CRASH_AT` (see `upkeep_agent::engine::crash`). Never shipped.

fn main() -> std::process::ExitCode {
    if let Ok(at) = std::env::var("UPKEEP_CRASH_AT") {
        upkeep_agent::engine::crash::install(move |point| {
            if point == at {
                tracing::warn!(point, "crash point reached: killing the agent");
                let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            }
        });
    }
    upkeep_agent::cli::main()
}
