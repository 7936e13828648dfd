//! The LOCK file: one process owns a store at a time, and a second one is told who.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
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
        let command: Vec<String> = std::env::args().collect();
        file.set_len(0).map_err(Error::io("writing", &path))?;
        file.rewind().map_err(Error::io("writing", &path))?;
        writeln!(file, "{}\n{}", std::process::id(), command.join(" "))
            .map_err(Error::io("writing", &path))?;
        Ok(StoreLock { _file: file })
    }
}
