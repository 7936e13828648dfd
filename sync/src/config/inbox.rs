//! `[inbox]`: a directory the daemon watches for OCI layout tarballs.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Cx};

/// `[inbox]`: tarballs dropped in `path` are imported once complete (the daemon's job).
#[derive(Clone, Debug)]
pub struct InboxSection {
    /// The watched directory.
    pub path: PathBuf,
    /// How long a file must stay unchanged before it counts as complete (default 5 s).
    pub settle: Duration,
    /// A job to run on what was imported.
    pub job: Option<String>,
}

/// Check `[inbox]`; `jobs` are the names of the file's jobs (`job` must name one of them).
pub(crate) fn parse(
    cx: &Cx<'_>,
    b: RawInbox,
    jobs: &[&str],
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<InboxSection, ConfigError> {
    let settle = match &b.settle {
        None => Duration::from_secs(5),
        Some(s) => humantime::parse_duration(s.get_ref()).map_err(|e| {
            cx.at(
                s,
                "inbox.settle",
                format!("{:?} is not a duration: {e}", s.get_ref()),
            )
        })?,
    };
    if let Some(job) = &b.job {
        if !jobs.contains(&job.get_ref().as_str()) {
            return Err(cx.at(
                job,
                "inbox.job",
                format!("no [[job]] is named {:?}", job.get_ref()),
            ));
        }
    }
    if b.path.get_ref().is_empty() {
        return Err(cx.at(&b.path, "inbox.path", "empty path".into()));
    }
    Ok(InboxSection {
        path: resolve(b.path.get_ref()),
        settle,
        job: b.job.map(Spanned::into_inner),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInbox {
    path: Spanned<String>,
    settle: Option<Spanned<String>>,
    job: Option<Spanned<String>>,
}
