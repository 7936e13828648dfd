//! The one place the CLI builds its tokio runtime. Commands stay synchronous and block on
//! the async libraries (copy, registry, serve, sync) through the runtime built here; each
//! command builds it once and drops it when done, so tasks still holding the store let go
//! of it before the store closes.

use anyhow::{Context as _, Result};
use tokio::runtime::Runtime;

/// How many worker threads a runtime gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// Four: transfers are bound by the network and disks, and blocking store work goes to
    /// tokio's blocking pool, so more workers only add contention.
    Transfer,
    /// One per core: a server answers many clients at once.
    PerCore,
}

/// Build the multi-threaded runtime a command blocks on.
pub fn build(workers: Workers) -> Result<Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers == Workers::Transfer {
        b.worker_threads(4);
    }
    b.enable_all().build().context("starting the async runtime")
}
