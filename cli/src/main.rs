//! `sealift`: the command-line front over the store and sync libraries.
//!
//! `main` only sets up logging, runs the command and maps the outcome to an exit code:
//! 0 success, 1 failure (or problems found), 2 usage error (from clap). A closed stdout
//! (`sealift images | head -1`) is success, not an error.

mod cli;
mod cli_airgap;
mod cmd;
mod context;
mod output;
mod progress;
mod runtime;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // anyhow captures a backtrace with every error when RUST_BACKTRACE is set, and an error
    // here is printed as its message only: the capture cost 170 MB of peak memory for
    // nothing. Panics still honour RUST_BACKTRACE. Set before any thread exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let cli = cli::Cli::parse();
    // A daemon's log is how its operator sees it work: info by default.
    let daemon = matches!(&cli.command, cli::Command::Sync(a) if a.daemon);
    init_tracing(if daemon { "info" } else { "warn" });
    match cmd::run(cli, args) {
        Ok(context::Status::Success) => ExitCode::SUCCESS,
        Ok(context::Status::Problems) => ExitCode::from(1),
        Ok(context::Status::Forwarded(code)) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::error_message(&e));
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr, filtered by `SEALIFT_LOG` (e.g. `debug`, `sealift_store=trace`);
/// `default` (warnings and errors, or info for the daemon) otherwise.
fn init_tracing(default: &str) {
    let (filter, bad) = match EnvFilter::try_from_env("SEALIFT_LOG") {
        Ok(f) => (f, None),
        Err(e) => {
            let bad = std::env::var("SEALIFT_LOG").ok().map(|v| (v, e));
            (EnvFilter::new(default), bad)
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr must not turn a log line into a panic (tracing-subscriber reports its
        // own write errors with eprintln!, which panics): a panic in a background thread (sled's I/O
        // threads, before format 2) left a flush waiting forever.
        .log_internal_errors(false)
        .init();
    if let Some((value, e)) = bad.filter(|(v, _)| !v.is_empty()) {
        tracing::warn!("ignoring SEALIFT_LOG={value:?}: {e}");
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
