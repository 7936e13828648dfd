//! What every command gets: the store (where it is, or the one already open) and how to print;
//! and how a command came out.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use sealift_store::Store;
use sealift_sync::control;

use crate::progress::Progress;

/// How a command that ran to the end came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// All good.
    Success,
    /// The command worked but found problems it already reported (exit code 1).
    Problems,
    /// The sync daemon ran the command; this is its exit code.
    Forwarded(u8),
}

/// What every command needs: where the store is and how to print.
pub struct Context {
    pub(crate) store_path: PathBuf,
    /// The store already open in this process (the daemon running a command for a client).
    pub(crate) shared: Option<Arc<Store>>,
    /// `--json`: one JSON document on stdout.
    pub json: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// Progress bars on stderr.
    pub progress: Progress,
    /// How the daemon answers a command sent to its control socket: the dispatcher, handed
    /// down so the daemon's module need not import the one that dispatches to it.
    pub serve_client: fn(Arc<Store>, control::Request) -> control::Response,
}

impl Context {
    /// Open the store (taking its lock), naming it in any error; or the one this process
    /// already has open.
    pub fn open_store(&self) -> Result<Arc<Store>> {
        if let Some(store) = self.shared_store() {
            return Ok(store);
        }
        tracing::debug!("opening store {}", self.store_path.display());
        Store::open(&self.store_path)
            .map(Arc::new)
            .with_context(|| format!("opening store {}", self.store_path.display()))
    }
}

impl Context {
    /// The store this process already has open, if it is the daemon running a command.
    pub fn shared_store(&self) -> Option<Arc<Store>> {
        self.shared.clone()
    }
}
