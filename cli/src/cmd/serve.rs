//! `sealift serve`: the store as a read-only registry until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use sealift_serve::ServeOptions;

use super::{Context, Status};

/// `sealift serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one). Plain HTTP only on loopback
    /// addresses unless --insecure-plain-http
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "IP:PORT")]
    pub addr: SocketAddr,
    /// Require basic auth from the users of this htpasswd file (bcrypt entries: htpasswd -B)
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address that is not loopback (content and passwords in clear)
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// Close a connection after this many seconds without a request in flight or a byte
    /// moved
    #[arg(long, default_value_t = ServeOptions::default().idle_timeout_secs, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Connections open at once; at the limit the one idle the longest is closed
    #[arg(long, default_value_t = ServeOptions::default().max_connections, value_name = "N")]
    pub max_connections: usize,
}

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
        ..ServeOptions::default()
    };
    let store = ctx.open_store()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
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
