//! `sealift sync --config FILE --daemon`: the daemon loop from `sealift_sync::daemon`, with
//! this binary's commands behind its control socket and SIGINT/SIGTERM as its stop signal.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use sealift_store::Store;
use sealift_sync::daemon::{self, DaemonOptions};
use tokio_util::sync::CancellationToken;

use super::{Context, Status};

/// Run the daemon on `store` until SIGINT or SIGTERM.
pub fn run(_ctx: &Context, config: &Path, store: Arc<Store>) -> Result<Status> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let shutdown = CancellationToken::new();
    let handler_store = Arc::clone(&store);
    let opts = DaemonOptions {
        config_path: config.to_path_buf(),
        control: Some(Arc::new(move |req| {
            super::run_for_client(Arc::clone(&handler_store), req)
        })),
        shutdown: shutdown.clone(),
    };
    rt.block_on(async {
        let signals = tokio::spawn(stop_on_signal(shutdown));
        let result = daemon::run(store, opts).await;
        signals.abort();
        result
    })?;
    tracing::info!("daemon stopped");
    Ok(Status::Success)
}

/// Cancel `token` on the first SIGINT or SIGTERM.
async fn stop_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    tokio::select! {
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
    }
    token.cancel();
}
