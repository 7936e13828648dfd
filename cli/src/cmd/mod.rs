//! One module per command group; [`run`] dispatches to them.

mod config;
mod copy;
mod du;
mod gc;
mod images;
mod inspect;
pub(crate) mod layout;
mod tag;
mod verify;

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use sealift_store::Store;

use crate::cli::{Cli, Command};
use crate::progress::Progress;

/// How a command that ran to the end came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// All good.
    Success,
    /// The command worked but found problems it already reported (exit code 1).
    Problems,
}

/// What every command needs: where the store is and how to print.
pub struct Context {
    store_path: PathBuf,
    /// `--json`: one JSON document on stdout.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// Progress bars on stderr.
    pub progress: Progress,
}

impl Context {
    /// Open the store (taking its lock), naming it in any error.
    pub fn open_store(&self) -> Result<Store> {
        tracing::debug!("opening store {}", self.store_path.display());
        Store::open(&self.store_path)
            .with_context(|| format!("opening store {}", self.store_path.display()))
    }
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> Result<Status> {
    let ctx = Context {
        store_path: cli
            .store
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(sealift_store::default_store_path),
        json: cli.json,
        quiet: cli.quiet,
        progress: Progress::new(cli.quiet),
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let status = match cli.command {
        Command::Images => images::run(&ctx, &mut out),
        Command::Inspect(a) => inspect::run(&ctx, &a, &mut out),
        Command::Tag(a) => tag::tag(&ctx, &a, &mut out),
        Command::Rm(a) => tag::rm(&ctx, &a, &mut out),
        Command::Gc(a) => gc::run(&ctx, &a, &mut out),
        Command::Verify(a) => verify::run(&ctx, &a, &mut out),
        Command::Du => du::run(&ctx, &mut out),
        Command::Import(a) => layout::import(&ctx, &a, &mut out),
        Command::Export(a) => layout::export(&ctx, &a, &mut out),
        Command::Inventory(a) => layout::inventory(&ctx, &a, &mut out),
        Command::Copy(a) => copy::copy_cmd(&ctx, &a, &mut out),
        Command::Pull(a) => copy::pull(&ctx, &a, &mut out),
        Command::Push(a) => copy::push(&ctx, &a, &mut out),
    };
    // Print what was written even when the command then failed (rm of several refs).
    let flushed = out.flush().context("writing to stdout");
    let status = status?;
    flushed?;
    Ok(status)
}
