//! What a job remembers between runs, in the store's `state` tree (see ARCHITECTURE.md):
//!
//! | namespace | key | record |
//! |---|---|---|
//! | `sync.tag` | `job \0 source repo \0 tag` | [`TagState`] |
//! | `sync.run` | `job \0 started (u64 BE, ms) ` | [`JobReport`] (the last [`HISTORY`] per job) |

use sealift_store::Store;
use serde::{Deserialize, Serialize};

use super::report::JobReport;

/// Namespace of per-tag state.
pub const TAG_NS: &str = "sync.tag";
/// Namespace of run reports.
pub const RUN_NS: &str = "sync.run";
/// Run reports kept per job.
pub const HISTORY: usize = 50;

/// What a job last saw and wrote for one source tag.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TagState {
    /// The source tag's digest when last copied.
    pub source_digest: String,
    /// The source's ETag for the tag, when it sent one.
    pub etag: Option<String>,
    /// Unix seconds of the last check against the source.
    pub checked: u64,
    /// Unix seconds of the first copy (orders retention when tags are not versions).
    pub first_copied: u64,
    /// Unix seconds of the last copy.
    pub copied: u64,
    /// Where it was written (`docker://host/repo:tag`, `store:repo:tag`, ...).
    pub destination: String,
    /// The destination repository (for retention).
    pub destination_repo: String,
    /// The digest the destination tag names (differs from the source with a rewritten
    /// index or a conversion).
    pub destination_digest: String,
    /// Source → destination digests of every manifest that changed on the way.
    pub digest_map: Vec<(String, String)>,
    /// Admitted by the job's `[job.verify]` when copied. A job that gains a policy checks
    /// again what it copied without one, rather than skipping it as unchanged.
    pub verified: bool,
}

fn tag_key(job: &str, repo: &str, tag: &str) -> Vec<u8> {
    let mut k = Vec::new();
    k.extend_from_slice(job.as_bytes());
    k.push(0);
    k.extend_from_slice(repo.as_bytes());
    k.push(0);
    k.extend_from_slice(tag.as_bytes());
    k
}

fn job_prefix(job: &str) -> Vec<u8> {
    let mut k = job.as_bytes().to_vec();
    k.push(0);
    k
}

/// The state of `job`'s `repo:tag`.
pub fn get(
    store: &Store,
    job: &str,
    repo: &str,
    tag: &str,
) -> sealift_store::Result<Option<TagState>> {
    store.state_get(TAG_NS, &tag_key(job, repo, tag))
}

/// Write the state of `job`'s `repo:tag`.
pub fn put(
    store: &Store,
    job: &str,
    repo: &str,
    tag: &str,
    s: &TagState,
) -> sealift_store::Result<()> {
    store.state_put(TAG_NS, &tag_key(job, repo, tag), s)
}

/// Forget `job`'s `repo:tag`.
pub fn remove(store: &Store, job: &str, repo: &str, tag: &str) -> sealift_store::Result<()> {
    store.state_remove(TAG_NS, &tag_key(job, repo, tag))?;
    Ok(())
}

/// Every tag state of `job`, as `(source repo, tag, state)`.
pub fn all(store: &Store, job: &str) -> sealift_store::Result<Vec<(String, String, TagState)>> {
    let rows: Vec<(Vec<u8>, TagState)> = store.state_scan(TAG_NS, &job_prefix(job))?;
    let skip = job.len() + 1;
    Ok(rows
        .into_iter()
        .filter_map(|(k, s)| {
            let rest = String::from_utf8(k.get(skip..)?.to_vec()).ok()?;
            let (repo, tag) = rest.split_once('\0')?;
            Some((repo.to_string(), tag.to_string(), s))
        })
        .collect())
}

/// Append a run report, dropping the oldest beyond [`HISTORY`].
pub fn record_run(store: &Store, report: &JobReport) -> sealift_store::Result<()> {
    let mut k = job_prefix(&report.job);
    k.extend_from_slice(&report.started_ms.to_be_bytes());
    store.state_put(RUN_NS, &k, report)?;
    let keys: Vec<(Vec<u8>, serde::de::IgnoredAny)> =
        store.state_scan(RUN_NS, &job_prefix(&report.job))?;
    if keys.len() > HISTORY {
        for (k, _) in &keys[..keys.len() - HISTORY] {
            store.state_remove(RUN_NS, k)?;
        }
    }
    store.state_flush()
}

/// The last `n` run reports of `job`, newest first.
pub fn runs(store: &Store, job: &str, n: usize) -> sealift_store::Result<Vec<JobReport>> {
    let rows: Vec<(Vec<u8>, JobReport)> = store.state_scan(RUN_NS, &job_prefix(job))?;
    Ok(rows.into_iter().rev().take(n).map(|(_, r)| r).collect())
}

/// The names of every job with a run report.
pub fn jobs_with_runs(store: &Store) -> sealift_store::Result<Vec<String>> {
    let rows: Vec<(Vec<u8>, serde::de::IgnoredAny)> = store.state_scan(RUN_NS, b"")?;
    let mut names: Vec<String> = rows
        .iter()
        .filter_map(|(k, _)| {
            let end = k.iter().position(|b| *b == 0)?;
            String::from_utf8(k[..end].to_vec()).ok()
        })
        .collect();
    names.dedup();
    Ok(names)
}
