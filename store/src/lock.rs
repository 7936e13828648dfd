//! The LOCK file: one process owns a store at a time, and a second one is told who.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Held for as long as the store is open; the OS releases it when the process dies, so a
/// crash never leaves a store locked.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Take the lock or say who holds it.
    pub fn acquire(root: &Path) -> Result<StoreLock> {
        let path = root.join("LOCK");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io("opening", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let mut lines = text.lines();
                let pid = lines
                    .next()
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0);
                let command = lines.next().unwrap_or("unknown command").to_string();
                return Err(Error::Locked {
                    path: root.to_path_buf(),
                    pid,
                    command,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("locking", &path)(e)),
        }
        // Other users may read the holder's command line in the "in use" error; it is
        // written redacted, and the file is the owner's alone (older stores made it 0644).
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io("setting permissions on", &path))?;
        let command = redact_command(std::env::args());
        // Who holds the store is for the "in use" message only; the flock is the lock. On
        // a full disk the write can fail, and a read-only command must still open.
        let written = file
            .set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}\n{}", std::process::id(), command));
        if let Err(e) = written {
            tracing::warn!("writing {}: {e}", path.display());
        }
        Ok(StoreLock { _file: file })
    }
}

impl StoreLock {
    /// A second handle on the same lock (a dup of the descriptor: the flock stays held
    /// until every handle is dropped), so a failed open can be retried without letting go.
    pub(crate) fn duplicate(&self) -> Result<StoreLock> {
        Ok(StoreLock {
            _file: self
                ._file
                .try_clone()
                .map_err(Error::io("duplicating", "LOCK"))?,
        })
    }
}

/// Options whose value is a credential (`user:secret`, or a secret alone).
const SECRET_OPTIONS: &[&str] = &["--creds", "--src-creds", "--dest-creds"];

/// The command line with every credential's secret (what follows the first `:`, or the
/// whole value when there is none) replaced by `***`; both `--creds v` and `--creds=v`.
pub fn redact_command(args: impl IntoIterator<Item = String>) -> String {
    fn redact(value: &str) -> String {
        match value.split_once(':') {
            Some((user, _)) => format!("{user}:***"),
            None => "***".to_string(),
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut secret_next = false;
    for a in args {
        if secret_next {
            out.push(redact(&a));
            secret_next = false;
            continue;
        }
        if SECRET_OPTIONS.contains(&a.as_str()) {
            secret_next = true;
            out.push(a);
            continue;
        }
        match a.split_once('=') {
            Some((opt, v)) if SECRET_OPTIONS.contains(&opt) => {
                out.push(format!("{opt}={}", redact(v)))
            }
            _ => out.push(a),
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::redact_command;

    fn r(args: &[&str]) -> String {
        redact_command(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn secrets_are_redacted_in_every_form() {
        assert_eq!(
            r(&["sealift", "copy", "--src-creds", "alice:s3cret", "a", "b"]),
            "sealift copy --src-creds alice:*** a b"
        );
        assert_eq!(
            r(&[
                "sealift",
                "--creds=bob:pw:with:colons",
                "--dest-creds",
                "tokenonly"
            ]),
            "sealift --creds=bob:*** --dest-creds ***"
        );
        assert_eq!(
            r(&["sealift", "--dest-creds=x:y", "--src-creds"]),
            "sealift --dest-creds=x:*** --src-creds"
        );
        assert_eq!(r(&["sealift", "images", "a:b"]), "sealift images a:b");
    }
}
