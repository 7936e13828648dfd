//! `sealift serve`: the store as a read-only registry until SIGINT or SIGTERM.

use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_serve::ServeOptions;

use crate::cli::ServeArgs;
use crate::context::{Context, Status};

/// Serve until a signal; then finish the requests in flight and exit 0.
pub fn run(ctx: &Context, args: &ServeArgs, out: &mut dyn Write) -> Result<Status> {
    let opts = ServeOptions {
        addr: args.addr,
        htpasswd: args.htpasswd.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        insecure_plain_http: args.insecure_plain_http,
        idle_timeout_secs: args.idle_timeout,
        max_connections: args.max_connections,
        redirect_blobs: args.redirect_blobs,
        redirect_ttl_secs: args.redirect_ttl.0.as_secs(),
        ..ServeOptions::default()
    };
    let store = ctx.open_store()?;
    let rt = crate::runtime::build(crate::runtime::Workers::PerCore)?;
    rt.block_on(async {
        let server = sealift_serve::bind(store, &opts).await?;
        let scheme = if server.is_tls() { "https" } else { "http" };
        let addr = server.local_addr();
        if ctx.json {
            let v = serde_json::json!({ "address": addr.to_string(), "scheme": scheme });
            writeln!(out, "{v}")?;
        } else if !ctx.quiet {
            writeln!(
                out,
                "Serving {} on {scheme}://{addr}",
                ctx.store_path.display()
            )?;
        }
        // Whoever started us reads the address from this line while we serve.
        out.flush().context("writing to stdout")?;
        server.run(signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(Status::Success)
}

/// SIGINT or SIGTERM.
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for signals; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}
