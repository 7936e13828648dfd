//! The daemon's control socket.
//!
//! One process at a time opens a store (its LOCK, and the metadata file's own lock), and
//! `sealift sync --daemon` keeps it open for as long as it runs. Rather than a second reader
//! the daemon listens on a
//! Unix socket inside the store directory and runs the commands that are safe next to its own
//! work (`images`, `inspect`, `du`, `verify`, `gc`, `sync status`) on the caller's behalf.
//! The socket is mode 0600 in the store directory: whoever may run commands through it could
//! open the store anyway.
//!
//! The protocol is one JSON line each way: a [`Request`] (the command line, minus the program
//! name) and a [`Response`] (what the command printed and its exit code).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

/// File name of the socket inside the store directory.
pub const SOCKET_NAME: &str = "daemon.sock";

/// Bound on a request line: a command line, never large.
const MAX_REQUEST: u64 = 1 << 20;
/// Bound on a response: `inspect --json` of a huge index stays far below this.
const MAX_RESPONSE: u64 = 256 << 20;

/// Where the daemon of the store at `store_root` listens.
pub fn socket_path(store_root: &Path) -> PathBuf {
    store_root.join(SOCKET_NAME)
}

/// A command for the daemon to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    /// The command line after the program name, as the user typed it.
    pub args: Vec<String>,
}

/// What the command printed and how it ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Response {
    /// Standard output, as the command would have printed it.
    pub stdout: String,
    /// Standard error (error messages).
    pub stderr: String,
    /// Exit code.
    pub code: u8,
}

/// What runs a request inside the daemon. It blocks (store commands are synchronous), so the
/// server calls it on a blocking thread.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be created, read or written.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket's path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The other side sent something that is not a request or response.
    #[error("control socket {path}: bad message: {reason}")]
    Protocol {
        /// The socket's path.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Ask the daemon listening on `socket` to run `req`. `Ok(None)` when no daemon listens there
/// (no socket file, or a stale one left by a killed daemon): the caller then opens the store
/// itself.
pub fn request(socket: &Path, req: &Request) -> Result<Option<Response>, ControlError> {
    let io_err = |source| ControlError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(io_err(e)),
    };
    let mut line = serde_json::to_vec(req).expect("a request serialises");
    line.push(b'\n');
    stream.write_all(&line).map_err(io_err)?;
    stream.shutdown(std::net::Shutdown::Write).map_err(io_err)?;
    let mut buf = Vec::new();
    BufReader::new(stream)
        .take(MAX_RESPONSE)
        .read_until(b'\n', &mut buf)
        .map_err(io_err)?;
    serde_json::from_slice(&buf)
        .map(Some)
        .map_err(|e| ControlError::Protocol {
            path: socket.to_path_buf(),
            reason: if buf.is_empty() {
                "the daemon closed the connection without answering".into()
            } else {
                e.to_string()
            },
        })
}

/// Listen on `socket` until `shutdown`, answering each connection with `handler`. The socket
/// file is replaced if a killed daemon left one (the caller holds the store's lock, so no
/// live daemon can be using it) and removed on the way out.
pub async fn serve(
    socket: PathBuf,
    handler: Handler,
    shutdown: CancellationToken,
) -> Result<(), ControlError> {
    let io_err = |source| ControlError::Io {
        path: socket.clone(),
        source,
    };
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(e)),
        _ => {}
    }
    let listener = UnixListener::bind(&socket).map_err(io_err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .map_err(io_err)?;
    }
    tracing::info!("control socket listening on {}", socket.display());
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("control socket {}: accept: {e}", socket.display());
                    continue;
                }
            },
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            if let Err(e) = answer(stream, handler).await {
                tracing::warn!("control socket: {e}");
            }
        });
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// Read one request, run it, write the response.
async fn answer(stream: tokio::net::UnixStream, handler: Handler) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    tokio::io::BufReader::new(read)
        .take(MAX_REQUEST)
        .read_until(b'\n', &mut line)
        .await?;
    let response = match serde_json::from_slice::<Request>(&line) {
        Ok(req) => tokio::task::spawn_blocking(move || handler(req))
            .await
            .unwrap_or_else(|e| Response {
                stderr: format!("error: the daemon's command handler failed: {e}\n"),
                code: 1,
                ..Response::default()
            }),
        Err(e) => Response {
            stderr: format!("error: bad control request: {e}\n"),
            code: 2,
            ..Response::default()
        },
    };
    let mut out = serde_json::to_vec(&response).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}
