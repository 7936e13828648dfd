//! `sealift sync --config FILE --daemon`: the daemon loop from `sealift_sync::daemon`, with
//! this binary's commands behind its control socket, `sealift serve` in the same process
//! when the config has a `[serve]` section, and SIGINT/SIGTERM as its stop signal.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use sealift_serve::ServeOptions;
use sealift_store::Store;
use sealift_sync::daemon::{self, DaemonOptions};
use sealift_sync::Config;
use tokio_util::sync::CancellationToken;

use super::{Context, Status};

/// The `[serve]` section as `sealift serve` options; relative files resolve against the
/// config's directory, as every path in the config does.
fn serve_options(config: &Config) -> Result<Option<ServeOptions>> {
    let Some(table) = &config.serve else {
        return Ok(None);
    };
    let mut opts: ServeOptions = toml::Value::Table(table.clone())
        .try_into()
        .with_context(|| format!("{}: [serve]", config.path.display()))?;
    let base = config.path.parent().unwrap_or(Path::new(""));
    for p in [&mut opts.htpasswd, &mut opts.tls_cert, &mut opts.tls_key]
        .into_iter()
        .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(Some(opts))
}

/// Run the daemon on `store` until SIGINT or SIGTERM.
pub fn run(_ctx: &Context, config: &Config, store: Arc<Store>) -> Result<Status> {
    let serve = serve_options(config)?;
    let config = config.path.as_path();
    let rt = crate::runtime::build(crate::runtime::Workers::Transfer)?;
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
        // The server binds first, so a taken port or a bad key stops the daemon at start.
        let server = match &serve {
            Some(o) => {
                let server = sealift_serve::bind(Arc::clone(&store), o)
                    .await
                    .context("[serve]")?;
                tracing::info!("serving the store on {}", server.local_addr());
                let stop = shutdown.clone();
                Some(tokio::spawn(async move {
                    server.run(async move { stop.cancelled().await }).await
                }))
            }
            None => None,
        };
        let signals = tokio::spawn(stop_on_signal(shutdown.clone()));
        let result = daemon::run(store, opts).await;
        // A daemon that failed takes its server down with it.
        shutdown.cancel();
        signals.abort();
        if let Some(server) = server {
            server.await.context("the server task")??;
        }
        result.map_err(anyhow::Error::from)
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
