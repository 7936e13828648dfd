//! `sealift sync --config FILE --daemon`: the daemon loop from `sealift_sync::daemon`, with
//! this binary's commands behind its control socket, `sealift serve` in the same process
//! when the config has a `[serve]` section, and SIGINT/SIGTERM as its stop signal.

use std::sync::Arc;

use anyhow::{Context as _, Result};
use sealift_serve::ServeOptions;
use sealift_store::Store;
use sealift_sync::config::ServeSection;
use sealift_sync::daemon::{self, DaemonOptions};
use sealift_sync::Config;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Status};

/// `[serve]` as `sealift serve` options: the keys given, serve's defaults for the rest.
/// The section was checked (and its paths resolved) when the config was loaded.
fn serve_options(section: &ServeSection) -> ServeOptions {
    let d = ServeOptions::default();
    ServeOptions {
        addr: section.addr.unwrap_or(d.addr),
        htpasswd: section.htpasswd.clone(),
        tls_cert: section.tls_cert.clone(),
        tls_key: section.tls_key.clone(),
        insecure_plain_http: section.insecure_plain_http.unwrap_or(d.insecure_plain_http),
        shutdown_grace_secs: section.shutdown_grace_secs.unwrap_or(d.shutdown_grace_secs),
        idle_timeout_secs: section.idle_timeout_secs.unwrap_or(d.idle_timeout_secs),
        max_connections: section.max_connections.unwrap_or(d.max_connections),
        redirect_blobs: section.redirect_blobs.unwrap_or(d.redirect_blobs),
        redirect_ttl_secs: section.redirect_ttl_secs.unwrap_or(d.redirect_ttl_secs),
    }
}

/// Run the daemon on `store` until SIGINT or SIGTERM.
pub fn run(ctx: &Context, config: &Config, store: Arc<Store>) -> Result<Status> {
    let serve = config.serve.as_ref().map(serve_options);
    let config = config.path.as_path();
    let rt = crate::runtime::build(crate::runtime::Workers::Transfer)?;
    let shutdown = CancellationToken::new();
    let handler_store = Arc::clone(&store);
    let answer = ctx.serve_client;
    let opts = DaemonOptions {
        config_path: config.to_path_buf(),
        control: Some(Arc::new(move |req| answer(Arc::clone(&handler_store), req))),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A `[serve]` section comes out as the options `sealift serve` would get: given keys as
    /// written (paths against the config's directory), serve's defaults for the rest.
    #[test]
    fn serve_section_round_trips_into_serve_options() {
        let dir = Path::new("/etc/sealift");
        let text = "[serve]\naddr = \"0.0.0.0:5443\"\nhtpasswd = \"users\"\n\
                    tls_cert = \"tls/cert.pem\"\ntls_key = \"/k.pem\"\n\
                    shutdown_grace_secs = 5\nidle_timeout_secs = 7\nmax_connections = 9\n";
        let config = Config::parse(text, &dir.join("sync.toml")).unwrap();
        let opts = serve_options(config.serve.as_ref().unwrap());
        assert_eq!(
            opts,
            ServeOptions {
                addr: "0.0.0.0:5443".parse().unwrap(),
                htpasswd: Some(dir.join("users")),
                tls_cert: Some(dir.join("tls/cert.pem")),
                tls_key: Some("/k.pem".into()),
                insecure_plain_http: false,
                shutdown_grace_secs: 5,
                idle_timeout_secs: 7,
                max_connections: 9,
                ..ServeOptions::default()
            }
        );
        // An empty section is serve's defaults, as an empty table deserialised was.
        let config = Config::parse("[serve]\n", &dir.join("sync.toml")).unwrap();
        let empty: ServeOptions = toml::from_str("").unwrap();
        assert_eq!(serve_options(config.serve.as_ref().unwrap()), empty);
        assert_eq!(empty, ServeOptions::default());
        // No section, no server.
        let config = Config::parse("", &dir.join("sync.toml")).unwrap();
        assert!(config.serve.is_none());
    }
}
