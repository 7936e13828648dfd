//! The watched inbox: OCI layout tarballs dropped into a folder are imported into the store
//! once completely written, then moved to `done/` or `failed/` (with a `.reason` file).
//!
//! "Completely written" has two signs, and either is enough: the file was renamed into the
//! folder (how careful writers publish: `rsync`, `mv` from the same filesystem, `curl -o x.part
//! && mv`), or its size and modification time have not changed for the settle time. Names a
//! writer is still working on (hidden files, `*.part`, `*.partial`, `*.tmp`) are never
//! touched.
//!
//! A tarball is never imported twice: its sha256 is recorded in the store once imported, and
//! the same bytes dropped again (under any name) go straight to `done/`.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sealift_oci::Digest;
use sealift_store::Store;
use serde::Serialize;

use sealift_layout::{import_path, ImportOptions, LayoutError};

/// Where the inbox remembers what it imported: the store's metadata in the daemon.
pub trait Ledger {
    /// When and under which name the tarball with this digest was imported, if it was.
    fn imported(&self, digest: &Digest) -> Option<String>;
    /// Remember that the tarball with this digest was imported (`note`: its name and time).
    fn record(&self, digest: &Digest, note: &str) -> Result<(), sealift_store::Error>;
}

/// What became of one tarball.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Imported; now in `done/`.
    Imported {
        /// Where it was moved.
        file: PathBuf,
        /// The tags the import set.
        references: Vec<String>,
        /// Bytes written to the store (0 when every blob was already there).
        bytes_written: u64,
    },
    /// The same bytes were imported before; moved to `done/` without importing.
    AlreadyImported {
        /// Where it was moved.
        file: PathBuf,
        /// The earlier import.
        earlier: String,
    },
    /// The import failed; the tarball is in `failed/` beside a `.reason` file.
    Failed {
        /// Where it was moved.
        file: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Errors of the inbox itself (a bad tarball is an [`Outcome::Failed`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// A folder or file of the inbox could not be read, created or moved.
    #[error("inbox: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path at fault.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> InboxError + 'a {
    move |source| InboxError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A watched folder and what it has seen of the files in it.
pub struct Inbox {
    dir: PathBuf,
    settle: Duration,
    /// Size and mtime last seen per file, and since when they have not changed.
    seen: HashMap<PathBuf, (u64, SystemTime, Instant)>,
    /// Files a rename put in place: complete without waiting.
    renamed: HashSet<PathBuf>,
}

impl Inbox {
    /// Watch `dir` (created with `done/` and `failed/` if missing).
    pub fn new(dir: &Path, settle: Duration) -> Result<Inbox, InboxError> {
        for d in [dir.to_path_buf(), dir.join("done"), dir.join("failed")] {
            fs::create_dir_all(&d).map_err(io_err("creating", &d))?;
        }
        Ok(Inbox {
            dir: dir.to_path_buf(),
            settle,
            seen: HashMap::new(),
            renamed: HashSet::new(),
        })
    }

    /// The watched folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Note that `path` was renamed into the folder (from a file-system event).
    pub fn renamed_in(&mut self, path: &Path) {
        if path.parent() == Some(self.dir.as_path()) {
            self.renamed.insert(path.to_path_buf());
        }
    }

    /// Tarballs that are completely written, oldest first by name. Others are remembered
    /// so a later call can tell whether they stopped changing.
    pub fn ready(&mut self) -> Result<Vec<PathBuf>, InboxError> {
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut present = HashSet::new();
        let entries = fs::read_dir(&self.dir).map_err(io_err("reading", &self.dir))?;
        for entry in entries {
            let entry = entry.map_err(io_err("reading", &self.dir))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else {
                continue; // gone since read_dir
            };
            if !meta.is_file() || !is_candidate(name) {
                continue;
            }
            present.insert(path.clone());
            let stamp = (
                meta.len(),
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            );
            let since = match self.seen.get(&path) {
                Some(&(len, mtime, since)) if (len, mtime) == stamp => since,
                _ => now,
            };
            self.seen.insert(path.clone(), (stamp.0, stamp.1, since));
            if self.renamed.contains(&path) || now.duration_since(since) >= self.settle {
                ready.push(path);
            }
        }
        self.seen.retain(|p, _| present.contains(p));
        self.renamed.retain(|p| present.contains(p));
        ready.sort();
        Ok(ready)
    }

    /// Import one ready tarball and move it out of the folder. Blocking: call it from a
    /// blocking thread.
    pub fn process(
        &mut self,
        store: &Store,
        ledger: &dyn Ledger,
        path: &Path,
    ) -> Result<Outcome, InboxError> {
        self.seen.remove(path);
        self.renamed.remove(path);
        let digest = match file_digest(path) {
            Ok(d) => d,
            Err(e) => {
                return self.fail(path, &format!("reading {}: {e}", path.display()));
            }
        };
        if let Some(earlier) = ledger.imported(&digest) {
            let file = self.move_to(path, "done")?;
            tracing::info!(
                "inbox: {} has the same bytes ({digest}) as {earlier}; not importing it again",
                path.display()
            );
            return Ok(Outcome::AlreadyImported { file, earlier });
        }
        match import_path(store, path, &ImportOptions::default()) {
            Ok(report) => {
                let note = format!(
                    "{} imported at {}",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    humantime_now()
                );
                if let Err(e) = ledger.record(&digest, &note) {
                    // Imported but not remembered: leave it for the next scan, which
                    // imports it again (a no-op for the store) and records it then.
                    tracing::warn!("inbox: recording {} failed: {e}", path.display());
                    return Err(InboxError::Io {
                        what: "recording",
                        path: path.to_path_buf(),
                        source: io::Error::other(e.to_string()),
                    });
                }
                let file = self.move_to(path, "done")?;
                tracing::info!(
                    "inbox: imported {} ({} bytes new)",
                    path.display(),
                    report.bytes_written
                );
                Ok(Outcome::Imported {
                    file,
                    references: report
                        .images
                        .iter()
                        .filter_map(|i| i.reference.clone())
                        .collect(),
                    bytes_written: report.bytes_written,
                })
            }
            Err(e) => self.fail(path, &error_chain(&e)),
        }
    }

    fn fail(&self, path: &Path, reason: &str) -> Result<Outcome, InboxError> {
        let file = self.move_to(path, "failed")?;
        let mut reason_file = file.clone().into_os_string();
        reason_file.push(".reason");
        let reason_file = PathBuf::from(reason_file);
        fs::write(&reason_file, format!("{reason}\n")).map_err(io_err("writing", &reason_file))?;
        tracing::warn!("inbox: {} failed: {reason}", path.display());
        Ok(Outcome::Failed {
            file,
            reason: reason.to_string(),
        })
    }

    /// Move `path` into `sub/`, never over an earlier file of the same name.
    fn move_to(&self, path: &Path, sub: &str) -> Result<PathBuf, InboxError> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let dir = self.dir.join(sub);
        let mut target = dir.join(&*name);
        let mut n = 1;
        while target.exists() {
            target = dir.join(format!("{name}.{n}"));
            n += 1;
        }
        fs::rename(path, &target).map_err(io_err("moving", path))?;
        Ok(target)
    }
}

/// Whether a file name is a tarball to import (and not one still being written).
fn is_candidate(name: &str) -> bool {
    let busy = name.starts_with('.')
        || [".part", ".partial", ".tmp", ".reason"]
            .iter()
            .any(|s| name.ends_with(s));
    let tarball = [".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.zstd"]
        .iter()
        .any(|s| name.ends_with(s));
    tarball && !busy
}

fn file_digest(path: &Path) -> io::Result<Digest> {
    let mut file = File::open(path)?;
    let mut hasher = sealift_oci::digest::Hasher::new(sealift_oci::Algorithm::Sha256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

fn error_chain(e: &LayoutError) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

fn humantime_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("unix time {secs}")
}
