//! The sync configuration file (TOML): where the store is, how to reach each registry,
//! the jobs, the daemon's inbox and server. Everything is checked when the file is loaded,
//! before any I/O, and every error names the file, the line and column, the key and what
//! was wrong (`error.rs`).
//!
//! One file per section: `registry.rs` (`[[registry]]`), `job.rs` (`[[job]]`, with the
//! places of `place.rs`, the selections of `select.rs` and the schedules of `schedule.rs`),
//! `inbox.rs` (`[inbox]`), `serve.rs` (`[serve]`), `verify.rs` (`[job.verify]`). This file reads the TOML and puts the
//! checked sections together.
//!
//! See `config.example.toml` at the root of the repository for every key.

mod error;
mod images_from;
mod inbox;
mod job;
mod place;
mod registry;
pub mod schedule;
pub mod select;
mod serve;
mod verify;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use error::ConfigError;
pub use images_from::ImagesFrom;
pub use inbox::InboxSection;
pub use job::{JobConfig, Retention, RewriteIndex};
pub use place::{place_repo, Place};
pub use registry::{CredentialSource, RegistrySection, SecretSource};
pub use schedule::Schedule;
pub use select::{NameFilter, TagSelection};
pub use serve::ServeSection;

use error::Cx;

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from (relative paths in it resolve against its directory).
    pub path: PathBuf,
    /// `[store] path`; `None`: the default store (or `--store`).
    pub store: Option<PathBuf>,
    /// `[[registry]]` sections.
    pub registries: Vec<RegistrySection>,
    /// `[[job]]` sections, in file order.
    pub jobs: Vec<JobConfig>,
    /// `[inbox]`: a directory watched for OCI layout tarballs (the daemon's).
    pub inbox: Option<InboxSection>,
    /// `[serve]`: `sealift serve` in the daemon's process.
    pub serve: Option<ServeSection>,
}

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Check a configuration's text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cx = Cx { text, file: path };
        let raw: Raw = toml::from_str(text).map_err(|e| cx.toml(&e))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let resolve = |p: &str| -> PathBuf {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        let store = match raw.store.and_then(|s| s.path) {
            Some(p) if p.get_ref().is_empty() => {
                return Err(cx.at(&p, "store.path", "empty path".into()))
            }
            Some(p) => Some(resolve(p.get_ref())),
            None => None,
        };
        let registries = registry::parse(&cx, raw.registry, &resolve)?;
        let jobs = job::parse(&cx, raw.job, &resolve)?;
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        let inbox = raw
            .inbox
            .map(|b| inbox::parse(&cx, b, &names, &resolve))
            .transpose()?;
        let serve = raw
            .serve
            .map(|s| serve::parse(&cx, s, &resolve))
            .transpose()?;
        Ok(Config {
            path: path.to_path_buf(),
            store,
            registries,
            jobs,
            inbox,
            serve,
        })
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The `[[registry]]` section for `host`, if any.
    pub fn registry(&self, host: &str) -> Option<&RegistrySection> {
        self.registries.iter().find(|r| r.host == host)
    }
}

// ---- the file as written: each section's own keys are in its file ------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    store: Option<RawStore>,
    #[serde(default)]
    registry: Vec<registry::RawRegistry>,
    #[serde(default)]
    job: Vec<job::RawJob>,
    inbox: Option<inbox::RawInbox>,
    serve: Option<serve::RawServe>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<Spanned<String>>,
}
