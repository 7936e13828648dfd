//! One module per command group; [`run`] dispatches to them.

mod config;
mod copy;
mod daemon;
pub(crate) mod docs;
mod du;
mod gc;
mod images;
mod images_from;
mod init;
mod inspect;
pub(crate) mod layout;
mod migrate;
mod mirror_config;
pub(crate) mod serve;
pub mod sync;
mod tag;
mod verify;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Parser as _;
use sealift_store::Store;
use sealift_sync::control;

use crate::cli::{Cli, Command};
use crate::context::{Context, Status};
use crate::progress::Progress;

/// The store directory the command line names.
fn store_path(cli: &Cli) -> PathBuf {
    cli.store
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(sealift_store::default_store_path)
}

/// Run the parsed command line. `args` is the command line after the program name: a
/// command the sync daemon can answer is sent to it when one holds the store.
pub fn run(cli: Cli, args: Vec<String>) -> Result<Status> {
    let store_path = store_path(&cli);
    if daemon_may_answer(&cli.command) {
        let target = match &cli.command {
            Command::Sync(a) => {
                let explicit = store_path != sealift_store::default_store_path();
                sync::store_for(&store_path, explicit, a)
            }
            _ => store_path.clone(),
        };
        let socket = control::socket_path(&target);
        if let Some(resp) = control::request(&socket, &control::Request { args })? {
            tracing::debug!("answered by the daemon on {}", socket.display());
            io::stdout().write_all(resp.stdout.as_bytes())?;
            io::stderr().write_all(resp.stderr.as_bytes())?;
            return Ok(Status::Forwarded(resp.code));
        }
    }
    let ctx = Context {
        store_path,
        shared: None,
        serve_client: run_for_client,
        json: cli.json,
        quiet: cli.quiet,
        progress: Progress::new(cli.quiet),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let status = dispatch(&ctx, cli.command, &mut out);
    // Print what was written even when the command then failed (rm of several refs).
    let flushed = out.flush().context("writing to stdout");
    let status = status?;
    flushed?;
    Ok(status)
}

/// Commands that only read the store, or make small changes that are safe next to a running
/// sync (gc, tag, rm): these are what the daemon runs for other processes while it holds the
/// store.
fn daemon_may_answer(command: &Command) -> bool {
    match command {
        Command::Images
        | Command::Inspect(_)
        | Command::Du
        | Command::Gc(_)
        | Command::Tag(_)
        | Command::Rm(_) => true,
        Command::Verify(a) => !a.repair,
        Command::Sync(a) => a.command.is_some(),
        _ => false,
    }
}

/// Run a command for a client of the daemon's control socket, on the daemon's open store.
pub fn run_for_client(store: Arc<Store>, req: control::Request) -> control::Response {
    let parsed = Cli::try_parse_from(std::iter::once("sealift".to_string()).chain(req.args));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            return control::Response {
                stderr: e.render().to_string(),
                code: 2,
                ..control::Response::default()
            }
        }
    };
    if !daemon_may_answer(&cli.command) {
        return control::Response {
            stderr: "error: the sync daemon holds this store and runs only images, inspect, \
                     du, verify (without --repair), gc, tag, rm and sync status/history for \
                     other processes; stop the daemon to run this command\n"
                .into(),
            code: 1,
            ..control::Response::default()
        };
    }
    let ctx = Context {
        store_path: store.root().to_path_buf(),
        shared: Some(store),
        serve_client: run_for_client,
        json: cli.json,
        quiet: true,
        progress: Progress::new(true),
    };
    let mut out = Vec::new();
    let (stderr, code) = match dispatch(&ctx, cli.command, &mut out) {
        Ok(Status::Success) => (String::new(), 0),
        Ok(Status::Problems) => (String::new(), 1),
        Ok(Status::Forwarded(code)) => (String::new(), code),
        Err(e) => (format!("error: {}\n", crate::output::error_message(&e)), 1),
    };
    control::Response {
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr,
        code,
    }
}

/// Run one command with `ctx`, printing to `out`.
fn dispatch(ctx: &Context, command: Command, out: &mut dyn Write) -> Result<Status> {
    match command {
        Command::Init(a) => init::run(ctx, &a, out),
        Command::Images => images::run(ctx, out),
        Command::Inspect(a) => inspect::run(ctx, &a, out),
        Command::Tag(a) => tag::tag(ctx, &a, out),
        Command::Rm(a) => tag::rm(ctx, &a, out),
        Command::Gc(a) => gc::run(ctx, &a, out),
        Command::Verify(a) => verify::run(ctx, &a, out),
        Command::Migrate(a) => migrate::run(ctx, &a, out),
        Command::Du => du::run(ctx, out),
        Command::Import(a) => layout::import(ctx, &a, out),
        Command::Export(a) => layout::export(ctx, &a, out),
        Command::Inventory(a) => layout::inventory(ctx, &a, out),
        Command::ImagesFrom(a) => images_from::run(ctx, &a, out),
        Command::MirrorConfig(a) => mirror_config::run(ctx, &a, out),
        Command::Copy(a) => copy::copy_cmd(ctx, &a, out),
        Command::Pull(a) => copy::pull(ctx, &a, out),
        Command::Push(a) => copy::push(ctx, &a, out),
        Command::Sync(a) => sync::run(ctx, &a, out),
        Command::Serve(a) => serve::run(ctx, &a, out),
        Command::Completions(a) => docs::completions(&a, out),
        Command::Man(a) => docs::man(ctx, &a, out),
    }
}
