//! The `upkeep-agent` binary (see [`upkeep_agent::cli`]).

fn main() -> std::process::ExitCode {
    upkeep_agent::cli::main()
}
