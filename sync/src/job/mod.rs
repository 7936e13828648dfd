//! Running a sync job: list what the source has, choose tags, copy what changed, apply
//! retention, and remember what was seen (per-tag state and run reports in the store).
//!
//! The no-op fast path: a tag whose source digest (one HEAD, or a local lookup) equals the
//! one recorded when it was last copied is skipped without touching the destination, and a
//! tag matching `immutable_tags` that was copied before is not even checked. So a run where
//! nothing changed costs one tag list per repository plus at most one HEAD per tag.
//!
//! Resume: store destinations hold what a copy wrote under a lease with a ttl
//! ([`RESUME_TTL`]), so a killed run's blobs survive restarts and GC; registries and layout
//! directories keep completed blobs by themselves. The next run's copy finds them present
//! (no download) and writes the manifests still missing, children first, which heals an
//! index whose children were only partly copied.

pub mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::stream::{self, StreamExt};
use sealift_oci::{Descriptor, Digest, Repo, StoreRef, Tag};
use sealift_store::Store;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::{
    place_repo, select, Config, CredentialSource, JobConfig, Place, RewriteIndex, SecretSource,
};
use sealift_copy::copy::{copy, CopyOptions};
use sealift_copy::transport::layout_dir::{index_entries, LayoutDirSink, LayoutDirSource};
use sealift_copy::transport::layout_tar::LayoutTarSource;
use sealift_copy::transport::registry::{RegistrySink, RegistrySource};
use sealift_copy::transport::store::{StoreSink, StoreSource};
use sealift_copy::transport::{Sink, Source, TransportError};
use sealift_registry::{Credentials, Registry, RegistryConfig, RegistryError};

use state::TagState;

/// How long a store destination keeps what an unfinished copy wrote, for a resume.
pub const RESUME_TTL: Duration = Duration::from_secs(24 * 3600);

/// Destination repositories written at once by one job (layout directories: one, their
/// index.json is shared).
const PARALLEL_IMAGES: usize = 4;

/// Tag checks (a HEAD each) in flight at once per destination repository.
const CHECKS_AT_ONCE: usize = 8;

/// Why a job could not run at all (per-image failures are in the [`JobReport`]).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sealift_store::Error),
    /// A registry's credentials could not be read.
    #[error("credentials for {host}: {reason}")]
    Credentials {
        /// The registry.
        host: String,
        /// Why.
        reason: String,
    },
    /// A transport failed outside any one image.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No such job.
    #[error("no job named {0:?} in the config")]
    NoSuchJob(String),
}

/// Called after each image with its outcome (for progress lines).
pub type ImageCallback = Arc<dyn Fn(&ImageResult) + Send + Sync>;

/// How to run a job.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Only say what would be copied, skipped and pruned (with bytes); write nothing.
    pub dry_run: bool,
    /// Once cancelled, no new image is started; images in flight finish (their copy keeps
    /// the destination consistent either way) and the report says `cancelled`.
    pub cancel: CancellationToken,
    /// Called after each image.
    pub on_image: Option<ImageCallback>,
}

/// What happened to one image.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ImageResult {
    /// `copied`, `skipped` or `failed` (or `would copy` in a dry run).
    pub outcome: String,
    /// Source image (`docker://host/repo:tag`, ...).
    pub source: String,
    /// Destination image.
    pub destination: String,
    /// Source digest, when known.
    pub digest: Option<String>,
    /// Bytes transferred (or that would be).
    pub bytes: u64,
    /// Why it was skipped or failed; for an image copied with `rewrite_index = "auto"`,
    /// how its index was written (sparse, or rewritten because the destination refused it)
    /// and the digest written.
    pub reason: Option<String>,
}

/// A destination tag removed (or that would be) by retention.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct PruneResult {
    /// The destination tag.
    pub destination: String,
    /// What it named.
    pub digest: String,
    /// `gone from source`, `beyond keep_last`; or why it was kept.
    pub reason: String,
    /// Removed (false in a dry run or when refused).
    pub removed: bool,
}

/// What a run did. Recorded in the store (except dry runs) for `sync status`/`history`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct JobReport {
    /// The job.
    pub job: String,
    /// Start, Unix milliseconds.
    pub started_ms: u64,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
    /// Nothing was written.
    pub dry_run: bool,
    /// Stopped early (SIGINT/SIGTERM): images not started are not listed.
    pub cancelled: bool,
    /// An error that stopped the job before or around its images (listing the source).
    pub error: Option<String>,
    /// Images copied (or that would be).
    pub copied: Vec<ImageResult>,
    /// Images already up to date.
    pub skipped: Vec<ImageResult>,
    /// Images that failed, with the reason.
    pub failed: Vec<ImageResult>,
    /// Retention.
    pub pruned: Vec<PruneResult>,
    /// Bytes transferred (or that would be).
    pub bytes: u64,
}

impl JobReport {
    /// Whether everything succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.failed.is_empty()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One client per host and configuration in the process, so the concurrency and rate
/// limits of a `[[registry]]` are shared by every job (and by the daemon's runs).
pub fn client(config: &Config, host: &str) -> Result<Registry, SyncError> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, Registry>>> = OnceLock::new();
    let section = config.registry(host);
    let key = format!("{host}|{section:?}");
    let map = CLIENTS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(r) = map.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(r.clone());
    }
    let mut cfg = RegistryConfig::new(host);
    if let Some(s) = section {
        if let Some(i) = s.insecure {
            // Said either way: plain HTTP only, or HTTPS only (no fallback, even on loopback).
            cfg.insecure = i;
            cfg.http_fallback = false;
        }
        cfg.tls_verify = s.tls_verify;
        cfg.ca_file = s.ca_file.clone();
        cfg.max_concurrent = s.max_concurrent;
        cfg.requests_per_second = s.requests_per_second;
        cfg.rate_limit_headers = s.rate_limit_headers;
        if let CredentialSource::Basic { username, password } = &s.credentials {
            let err = |reason: String| SyncError::Credentials {
                host: host.to_string(),
                reason,
            };
            let password = match password {
                SecretSource::Env(v) => std::env::var(v)
                    .map_err(|_| err(format!("environment variable {v} is not set")))?,
                SecretSource::File(p) => std::fs::read_to_string(p)
                    .map_err(|e| err(format!("reading {}: {e}", p.display())))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            };
            cfg.credentials = Some(Credentials::Basic {
                username: username.clone(),
                password,
            });
        }
    }
    let r = Registry::new(cfg).map_err(TransportError::from)?;
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, r.clone());
    Ok(r)
}

/// One image the source has.
#[derive(Clone, Debug)]
struct Image {
    repo: String,
    tag: String,
    /// Known without asking a registry (store, layouts).
    desc: Option<Descriptor>,
    /// The layout's ref name for it.
    ref_name: Option<String>,
}

/// A repository's tags (`None`: not listed, the selection names them), or why not.
type TagList = Result<Option<Vec<String>>, String>;

/// What listing the source found.
#[derive(Default)]
struct Listing {
    images: Vec<Image>,
    /// Every tag of each repository whose complete tag list was read (for prune_gone).
    tags: BTreeMap<String, HashSet<String>>,
}

/// Split a layout ref name into repository and tag; a bare tag gets `default_repo`.
fn split_ref_name(name: &str, default_repo: &str) -> Option<(String, String)> {
    match name.rsplit_once(':') {
        Some((r, t)) if !r.is_empty() && !t.contains('/') => Some((r.to_string(), t.to_string())),
        _ if !name.contains('/') && !name.contains(':') => {
            Some((default_repo.to_string(), name.to_string()))
        }
        _ => None,
    }
}

fn from_entries(job: &JobConfig, entries: &[Descriptor], default_repo: &str) -> Listing {
    let mut l = Listing::default();
    let mut by_repo: BTreeMap<String, Vec<(String, Descriptor, String)>> = BTreeMap::new();
    for e in entries {
        let Some(name) = e.ref_name() else { continue };
        let Some((repo, tag)) = split_ref_name(name, default_repo) else {
            continue;
        };
        by_repo
            .entry(repo)
            .or_default()
            .push((tag, e.clone(), name.to_string()));
    }
    for (repo, tags) in by_repo {
        if !job.repositories.accepts(&repo) {
            continue;
        }
        let names: Vec<String> = tags.iter().map(|t| t.0.clone()).collect();
        l.tags.insert(repo.clone(), names.iter().cloned().collect());
        for chosen in job.tags.select(&names) {
            if let Some((t, d, n)) = tags.iter().find(|t| t.0 == chosen) {
                l.images.push(Image {
                    repo: repo.clone(),
                    tag: t.clone(),
                    desc: Some(d.clone()),
                    ref_name: Some(n.clone()),
                });
            }
        }
    }
    l
}

async fn list_source(
    store: &Arc<Store>,
    config: &Config,
    job: &JobConfig,
) -> Result<Listing, String> {
    match &job.source {
        Place::Registry { host, repo } => {
            let reg = client(config, host).map_err(|e| e.to_string())?;
            let repos = match repo {
                Some(r) => vec![r.clone()],
                None => {
                    let mut all = reg
                        .catalog()
                        .await
                        .map_err(|e| format!("listing the catalog of {host}: {e}"))?;
                    all.retain(|r| job.repositories.accepts(r));
                    all.sort();
                    all
                }
            };
            // Tag lists of several repositories at once.
            let lists: Vec<(String, TagList)> = stream::iter(repos)
                .map(|r| {
                    let reg = reg.clone();
                    async move {
                        if job.tags.explicit_only() {
                            return (r, Ok(None));
                        }
                        let t = match reg.tags(&r).await {
                            Ok(t) => Ok(Some(t)),
                            Err(RegistryError::NotFound { .. }) => Ok(Some(Vec::new())),
                            Err(e) => Err(format!("listing tags of {host}/{r}: {e}")),
                        };
                        (r, t)
                    }
                })
                .buffered(8)
                .collect()
                .await;
            let mut l = Listing::default();
            for (r, t) in lists {
                let tags = match t? {
                    Some(t) => {
                        l.tags.insert(r.clone(), t.iter().cloned().collect());
                        t
                    }
                    None => job.tags.list.clone(),
                };
                for t in job.tags.select(&tags) {
                    l.images.push(Image {
                        repo: r.clone(),
                        tag: t,
                        desc: None,
                        ref_name: None,
                    });
                }
            }
            Ok(l)
        }
        Place::Store { repo } => {
            let s = store.clone();
            let entries = tokio::task::spawn_blocking(move || s.tags())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            let mut l = Listing::default();
            let mut by_repo: BTreeMap<String, Vec<(String, Digest)>> = BTreeMap::new();
            for e in entries {
                let r = e.repo.as_str().to_string();
                let keep = match repo {
                    Some(one) => &r == one,
                    None => job.repositories.accepts(&r),
                };
                if keep {
                    by_repo
                        .entry(r)
                        .or_default()
                        .push((e.tag.as_str().to_string(), e.digest));
                }
            }
            if let Some(one) = repo {
                by_repo.entry(one.clone()).or_default();
            }
            for (r, tags) in by_repo {
                let names: Vec<String> = tags.iter().map(|t| t.0.clone()).collect();
                l.tags.insert(r.clone(), names.iter().cloned().collect());
                for chosen in job.tags.select(&names) {
                    let Some((_, d)) = tags.iter().find(|t| t.0 == chosen) else {
                        continue;
                    };
                    let rec = store.record(d).map_err(|e| e.to_string())?;
                    let desc = rec.map(|rec| Descriptor::new(rec.media_type, d.clone(), rec.size));
                    l.images.push(Image {
                        repo: r.clone(),
                        tag: chosen,
                        desc,
                        ref_name: None,
                    });
                }
            }
            Ok(l)
        }
        Place::LayoutDir { path } => {
            let entries = index_entries(path)
                .await
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            Ok(from_entries(job, &entries, &default_repo(path)))
        }
        Place::LayoutTar { path } => {
            let p = path.clone();
            let src = tokio::task::spawn_blocking(move || LayoutTarSource::open(p, None))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            Ok(from_entries(job, src.entries(), &default_repo(path)))
        }
    }
}

/// A layout's name as a repository, for ref names that are bare tags (as `import` does).
fn default_repo(path: &std::path::Path) -> String {
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = stem
        .trim_end_matches(".tar")
        .trim_end_matches(".tar.gz")
        .to_ascii_lowercase();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if clean.is_empty() {
        "image".into()
    } else {
        clean
    }
}

/// The destination repository for a source repository.
fn dest_repo(job: &JobConfig, src_repo: &str) -> String {
    let single = place_repo(&job.source).is_some();
    match (&job.destination, place_repo(&job.destination)) {
        (_, Some(d)) if single => d.to_string(),
        (_, Some(d)) => format!("{d}/{src_repo}"),
        // Into the store without a prefix, registry images keep their host, as `pull` does.
        (Place::Store { .. }, None) => match &job.source {
            Place::Registry { host, .. } => format!("{host}/{src_repo}"),
            _ => src_repo.to_string(),
        },
        (_, None) => src_repo.to_string(),
    }
}

fn describe(place: &Place, repo: &str, tag: &str) -> String {
    match place {
        Place::Registry { host, .. } => format!("docker://{host}/{repo}:{tag}"),
        Place::Store { .. } => format!("store:{repo}:{tag}"),
        Place::LayoutDir { path } => format!("oci:{}:{repo}:{tag}", path.display()),
        Place::LayoutTar { path } => format!("oci-archive:{}:{repo}:{tag}", path.display()),
    }
}

struct Ctx<'a> {
    store: &'a Arc<Store>,
    config: &'a Config,
    job: &'a JobConfig,
    opts: &'a RunOptions,
}

fn result(outcome: &str, source: String, destination: String) -> ImageResult {
    ImageResult {
        outcome: outcome.into(),
        source,
        destination,
        ..Default::default()
    }
}

/// Run one job once.
pub async fn run_job(
    store: &Arc<Store>,
    config: &Config,
    job: &JobConfig,
    opts: &RunOptions,
) -> Result<JobReport, SyncError> {
    let t0 = Instant::now();
    let mut report = JobReport {
        job: job.name.clone(),
        started_ms: now_ms(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let cx = Ctx {
        store,
        config,
        job,
        opts,
    };
    match list_source(store, config, job).await {
        Err(e) => report.error = Some(e),
        Ok(mut listing) => {
            let keep = keep_set(&cx, &listing)?;
            if let Some(keep) = &keep {
                listing
                    .images
                    .retain(|i| keep.contains(&(i.repo.clone(), i.tag.clone())));
            }
            if let Place::LayoutTar { path } = &job.destination {
                bundle(&cx, &listing, path, &mut report).await?;
            } else {
                images(&cx, &listing, &mut report).await;
                if !report.cancelled && report.error.is_none() {
                    retention(&cx, &listing, keep.as_ref(), &mut report).await?;
                }
            }
        }
    }
    report.duration_ms = t0.elapsed().as_millis() as u64;
    if !opts.dry_run {
        let (s, r) = (store.clone(), report.clone());
        tokio::task::spawn_blocking(move || state::record_run(&s, &r))
            .await
            .map_err(|e| TransportError::Join(e.to_string()))??;
    }
    Ok(report)
}

async fn images(cx: &Ctx<'_>, listing: &Listing, report: &mut JobReport) {
    let parallel = match cx.job.destination {
        Place::LayoutDir { .. } => 1,
        _ => PARALLEL_IMAGES,
    };
    // Images of one destination repository go one after the other: they share layers, and
    // distribution corrupts a repository's blob link when two uploads of one blob race
    // (a manifest PUT then fails with DIGEST_INVALID). The next image finds them present.
    let mut groups: Vec<(String, Vec<&Image>)> = Vec::new();
    for img in &listing.images {
        let d = dest_repo(cx.job, &img.repo);
        match groups.iter_mut().find(|g| g.0 == d) {
            Some(g) => g.1.push(img),
            None => groups.push((d, vec![img])),
        }
    }
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Vec<ImageResult>> = stream::iter(groups)
        .map(|(_, imgs)| {
            let cancelled = &cancelled;
            async move {
                // Checks (one HEAD each at most) at once; copies one after the other.
                let checked: Vec<Result<Todo<'_>, ImageResult>> = stream::iter(imgs)
                    .map(|img| check_image(cx, img))
                    .buffered(CHECKS_AT_ONCE)
                    .collect()
                    .await;
                let mut out = Vec::new();
                for c in checked {
                    let r = match c {
                        Err(done) => done,
                        Ok(_) if cx.opts.cancel.is_cancelled() => {
                            cancelled.store(true, std::sync::atomic::Ordering::Relaxed);
                            continue;
                        }
                        Ok(todo) => copy_image(cx, todo).await,
                    };
                    if let Some(cb) = &cx.opts.on_image {
                        cb(&r);
                    }
                    out.push(r);
                }
                out
            }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    report.cancelled = cancelled.into_inner();
    for r in results.into_iter().flatten() {
        report.bytes += r.bytes;
        match r.outcome.as_str() {
            "skipped" => report.skipped.push(r),
            "failed" => report.failed.push(r),
            _ => report.copied.push(r),
        }
    }
}

/// Whether the destination still has what the state says (local destinations only; a
/// registry destination is trusted, which is what makes a no-op run cost nothing there).
async fn dest_intact(cx: &Ctx<'_>, dest_repo: &str, tag: &str, st: &TagState) -> bool {
    match &cx.job.destination {
        Place::Store { .. } => {
            let Ok(r) = format!("{dest_repo}:{tag}").parse::<StoreRef>() else {
                return false;
            };
            cx.store
                .resolve(&r)
                .is_ok_and(|d| d.to_string() == st.destination_digest)
        }
        Place::LayoutDir { path } => {
            let name = format!("{dest_repo}:{tag}");
            index_entries(path).await.is_ok_and(|e| {
                e.iter().any(|d| {
                    d.ref_name() == Some(name.as_str())
                        && d.digest.to_string() == st.destination_digest
                })
            })
        }
        _ => true,
    }
}

/// An image whose source changed (or was never copied): what its copy needs.
struct Todo<'i> {
    img: &'i Image,
    drepo: String,
    source: String,
    destination: String,
    st: Option<TagState>,
    digest_s: String,
    etag: Option<String>,
    src: Arc<dyn Source>,
}

/// Decide whether an image needs a copy: `Err` is its result when it does not (skipped,
/// or failed). Cheap (one HEAD at most), so run for many images at once.
async fn check_image<'i>(cx: &Ctx<'_>, img: &'i Image) -> Result<Todo<'i>, ImageResult> {
    let job = cx.job;
    let drepo = dest_repo(job, &img.repo);
    let source = describe(&job.source, &img.repo, &img.tag);
    let destination = describe(&job.destination, &drepo, &img.tag);
    let fail = |reason: String| ImageResult {
        reason: Some(reason),
        ..result("failed", source.clone(), destination.clone())
    };
    let st = match state::get(cx.store, &job.name, &img.repo, &img.tag) {
        Ok(s) => s,
        Err(e) => return Err(fail(format!("reading sync state: {e}"))),
    };
    let same_dest = st.as_ref().filter(|s| s.destination == destination);
    if let (Some(s), Some(imm)) = (same_dest, &job.immutable_tags) {
        if imm.accepts(&img.tag) && !s.source_digest.is_empty() {
            return Err(ImageResult {
                digest: Some(s.source_digest.clone()),
                reason: Some("immutable tag, already copied".into()),
                ..result("skipped", source, destination)
            });
        }
    }
    // The source digest: one HEAD for a registry, a local lookup otherwise.
    let mut etag = None;
    let (digest, src): (Digest, Arc<dyn Source>) = match &job.source {
        Place::Registry { host, .. } => {
            let reg = match client(cx.config, host) {
                Ok(r) => r,
                Err(e) => return Err(fail(e.to_string())),
            };
            match reg.manifest_head(&img.repo, &img.tag).await {
                Ok(Some(h)) => {
                    etag = h.etag.clone();
                    let src = RegistrySource::new(
                        reg,
                        img.repo.clone(),
                        Some(img.tag.clone()),
                        Some(h.digest.clone()),
                    );
                    (h.digest, Arc::new(src))
                }
                Ok(None) => return Err(fail("not found at the source".into())),
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        Place::Store { .. } => {
            let Some(d) = &img.desc else {
                return Err(fail("tag names a digest the store has no record of".into()));
            };
            let r = match (img.repo.parse::<Repo>(), img.tag.parse::<Tag>()) {
                (Ok(r), Ok(t)) => StoreRef::tagged(r, t),
                _ => return Err(fail("not a valid store reference".into())),
            };
            (
                d.digest.clone(),
                Arc::new(StoreSource::new(cx.store.clone(), r)),
            )
        }
        Place::LayoutDir { path } => {
            let Some(d) = &img.desc else {
                return Err(fail("no index.json entry".into()));
            };
            (
                d.digest.clone(),
                Arc::new(LayoutDirSource::new(path.clone(), img.ref_name.clone())),
            )
        }
        Place::LayoutTar { path } => {
            let Some(d) = &img.desc else {
                return Err(fail("no index.json entry".into()));
            };
            let (p, n) = (path.clone(), img.ref_name.clone());
            match tokio::task::spawn_blocking(move || LayoutTarSource::open(p, n)).await {
                Ok(Ok(s)) => (d.digest.clone(), Arc::new(s)),
                Ok(Err(e)) => return Err(fail(e.to_string())),
                Err(e) => return Err(fail(e.to_string())),
            }
        }
    };
    let digest_s = digest.to_string();
    if let Some(s) = same_dest {
        if s.source_digest == digest_s && dest_intact(cx, &drepo, &img.tag, s).await {
            if !cx.opts.dry_run {
                let mut s = s.clone();
                s.checked = now_secs();
                s.etag = etag.or(s.etag);
                if let Err(e) = state::put(cx.store, &job.name, &img.repo, &img.tag, &s) {
                    return Err(fail(format!("writing sync state: {e}")));
                }
            }
            return Err(ImageResult {
                digest: Some(digest_s),
                reason: Some("unchanged".into()),
                ..result("skipped", source, destination)
            });
        }
    }
    let st = st.clone();
    Ok(Todo {
        img,
        drepo,
        source,
        destination,
        st,
        digest_s,
        etag,
        src,
    })
}

/// Copy an image [`check_image`] found changed, and record its state.
async fn copy_image(cx: &Ctx<'_>, t: Todo<'_>) -> ImageResult {
    let job = cx.job;
    let Todo {
        img,
        drepo,
        source,
        destination,
        st,
        digest_s,
        etag,
        src,
    } = t;
    let fail = |reason: String| ImageResult {
        reason: Some(reason),
        ..result("failed", source.clone(), destination.clone())
    };
    let sink: Arc<dyn Sink> = match open_sink(cx, &drepo, &img.tag) {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let copts = CopyOptions {
        platforms: job.platforms.clone(),
        rewrite_index: job.rewrite_index == RewriteIndex::Always,
        rewrite_refused_index: job.rewrite_index == RewriteIndex::Auto,
        referrers: job.referrers,
        dry_run: cx.opts.dry_run,
        ..Default::default()
    };
    let rep = match copy(src, sink, &copts).await {
        Ok(r) => r,
        Err(e) => {
            return ImageResult {
                digest: Some(digest_s),
                ..fail(e.to_string())
            }
        }
    };
    let dest_digest = rep
        .destination_digest
        .as_ref()
        .map(|d| d.to_string())
        .unwrap_or_else(|| digest_s.clone());
    if !cx.opts.dry_run {
        let now = now_secs();
        let mut map: Vec<(String, String)> = rep
            .converted
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        if dest_digest != digest_s && !map.iter().any(|(a, _)| a == &digest_s) {
            map.push((digest_s.clone(), dest_digest.clone()));
        }
        let s = TagState {
            source_digest: digest_s.clone(),
            etag,
            checked: now,
            first_copied: st
                .as_ref()
                .filter(|s| s.first_copied > 0)
                .map_or(now, |s| s.first_copied),
            copied: now,
            destination: destination.clone(),
            destination_repo: drepo.clone(),
            destination_digest: dest_digest,
            digest_map: map,
        };
        if let Err(e) = state::put(cx.store, &job.name, &img.repo, &img.tag, &s) {
            return fail(format!("writing sync state: {e}"));
        }
    }
    let outcome = if rep.up_to_date {
        "skipped"
    } else if cx.opts.dry_run {
        "would copy"
    } else {
        "copied"
    };
    // With `rewrite_index = "auto"` the report says which way each index went.
    let how = rep
        .filtered_index
        .filter(|_| job.rewrite_index == RewriteIndex::Auto && !cx.opts.dry_run)
        .map(|f| {
            format!(
                "{f}: {}",
                rep.destination_digest
                    .as_ref()
                    .map_or(String::new(), |d| d.to_string())
            )
        });
    ImageResult {
        outcome: outcome.into(),
        digest: Some(digest_s),
        bytes: rep.bytes_moved,
        reason: if rep.up_to_date {
            Some("already at the destination".into())
        } else {
            how
        },
        source,
        destination,
    }
}

fn open_sink(cx: &Ctx<'_>, repo: &str, tag: &str) -> Result<Arc<dyn Sink>, SyncError> {
    Ok(match &cx.job.destination {
        Place::Registry { host, .. } => Arc::new(RegistrySink::new(
            client(cx.config, host)?,
            repo.to_string(),
            Some(tag.to_string()),
            None,
        )),
        Place::Store { .. } => {
            let r: StoreRef = format!("{repo}:{tag}").parse().map_err(
                |e: sealift_oci::reference::RefError| {
                    TransportError::Unsupported(format!("{repo}:{tag} as a store reference: {e}"))
                },
            )?;
            Arc::new(StoreSink::with_lease_ttl(cx.store.clone(), r, RESUME_TTL)?)
        }
        Place::LayoutDir { path } => Arc::new(LayoutDirSink::new(
            path.clone(),
            Some(format!("{repo}:{tag}")),
        )?),
        Place::LayoutTar { .. } => {
            return Err(
                TransportError::Unsupported("tarballs are written as bundles".into()).into(),
            )
        }
    })
}

/// A tarball destination: one bundle of every chosen store image, written again only when
/// the set of images or their digests changed.
async fn bundle(
    cx: &Ctx<'_>,
    listing: &Listing,
    path: &std::path::Path,
    report: &mut JobReport,
) -> Result<(), SyncError> {
    let mut refs = Vec::new();
    let mut sig = Vec::new();
    for img in &listing.images {
        let Some(d) = &img.desc else { continue };
        let (Ok(r), Ok(t)) = (img.repo.parse::<Repo>(), img.tag.parse::<Tag>()) else {
            continue;
        };
        refs.push(StoreRef::tagged(r, t));
        sig.push(format!("{}:{}@{}", img.repo, img.tag, d.digest));
    }
    sig.sort();
    let sig = Digest::sha256(sig.join("\n").as_bytes()).to_string();
    let dest = format!("oci-archive:{}", path.display());
    let st = state::get(cx.store, &cx.job.name, "", "bundle")?;
    let per_image = |outcome: &str, reason: Option<&str>| -> Vec<ImageResult> {
        listing
            .images
            .iter()
            .map(|i| ImageResult {
                outcome: outcome.into(),
                source: format!("store:{}:{}", i.repo, i.tag),
                destination: format!("{dest}:{}:{}", i.repo, i.tag),
                digest: i.desc.as_ref().map(|d| d.digest.to_string()),
                bytes: 0,
                reason: reason.map(str::to_string),
            })
            .collect()
    };
    if st.as_ref().is_some_and(|s| s.source_digest == sig) && path.exists() {
        report.skipped = per_image("skipped", Some("bundle unchanged"));
        return Ok(());
    }
    if refs.is_empty() {
        report.error = Some("no image selected for the bundle".into());
        return Ok(());
    }
    if cx.opts.dry_run {
        report.copied = per_image("would copy", None);
        return Ok(());
    }
    let (s, p, referrers) = (cx.store.clone(), path.to_path_buf(), cx.job.referrers);
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| TransportError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let r = tokio::task::spawn_blocking(move || {
        sealift_layout::export::export(
            &s,
            &refs,
            &p,
            &sealift_layout::export::ExportOptions {
                referrers,
                ..Default::default()
            },
        )
    })
    .await
    .map_err(|e| TransportError::Join(e.to_string()))?;
    match r {
        Ok(e) => {
            report.copied = per_image("copied", None);
            report.bytes = e.bytes;
            let now = now_secs();
            state::put(
                cx.store,
                &cx.job.name,
                "",
                "bundle",
                &TagState {
                    source_digest: sig,
                    checked: now,
                    first_copied: now,
                    copied: now,
                    destination: dest,
                    ..Default::default()
                },
            )?;
        }
        Err(e) => report.error = Some(format!("writing {}: {e}", path.display())),
    }
    Ok(())
}

type Key = (String, String);

/// With `keep_last`: the `(source repo, tag)`s to keep, per destination repository the N
/// highest versions (or, when not all tags are versions, the N most recently first copied;
/// tags not copied yet count as newest) among the tags selected now and those the job
/// copied before whose source tag still exists. Computed before copying, so a tag that
/// would be pruned is never copied first.
fn keep_set(cx: &Ctx<'_>, listing: &Listing) -> Result<Option<HashSet<Key>>, SyncError> {
    let Some(n) = cx.job.retention.keep_last else {
        return Ok(None);
    };
    let mut by_dest: BTreeMap<String, HashMap<Key, u64>> = BTreeMap::new();
    for (repo, tag, st) in state::all(cx.store, &cx.job.name)? {
        if repo.is_empty() || is_gone(cx, listing, &repo, &tag) {
            continue;
        }
        by_dest
            .entry(st.destination_repo.clone())
            .or_default()
            .insert((repo, tag), st.first_copied);
    }
    for i in &listing.images {
        by_dest
            .entry(dest_repo(cx.job, &i.repo))
            .or_default()
            .entry((i.repo.clone(), i.tag.clone()))
            .or_insert(u64::MAX);
    }
    let mut keep = HashSet::new();
    for (_, v) in by_dest {
        let mut v: Vec<(Key, u64)> = v.into_iter().collect();
        let all_versions = v.iter().all(|x| select::tag_version(&x.0 .1).is_some());
        v.sort_by(|a, b| {
            if all_versions {
                select::tag_version(&a.0 .1).cmp(&select::tag_version(&b.0 .1))
            } else {
                (a.1, &a.0 .1).cmp(&(b.1, &b.0 .1))
            }
        });
        let skip = v.len().saturating_sub(n);
        keep.extend(v.into_iter().skip(skip).map(|x| x.0));
    }
    Ok(Some(keep))
}

/// Whether `repo:tag` is gone from a source repository whose whole tag list was read.
fn is_gone(cx: &Ctx<'_>, listing: &Listing, repo: &str, tag: &str) -> bool {
    cx.job.retention.prune_gone
        && listing
            .tags
            .get(repo)
            .is_some_and(|tags| !tags.contains(tag))
}

/// Retention: remove destination tags this job wrote whose source tag is gone, and those
/// outside the `keep_last` set. Only tags the job itself recorded are ever touched.
async fn retention(
    cx: &Ctx<'_>,
    listing: &Listing,
    keep: Option<&HashSet<Key>>,
    report: &mut JobReport,
) -> Result<(), SyncError> {
    let r = &cx.job.retention;
    if r.keep_last.is_none() && !r.prune_gone {
        return Ok(());
    }
    let mut doomed: Vec<(String, String, TagState, &'static str)> = Vec::new();
    let mut kept: Vec<(String, String, TagState)> = Vec::new();
    for (repo, tag, st) in state::all(cx.store, &cx.job.name)? {
        if repo.is_empty() {
            continue;
        }
        if is_gone(cx, listing, &repo, &tag) {
            doomed.push((repo, tag, st, "gone from source"));
        } else if keep.is_some_and(|k| !k.contains(&(repo.clone(), tag.clone()))) {
            doomed.push((repo, tag, st, "beyond keep_last"));
        } else {
            kept.push((repo, tag, st));
        }
    }
    for (repo, tag, st, why) in doomed {
        let mut p = PruneResult {
            destination: st.destination.clone(),
            digest: st.destination_digest.clone(),
            reason: why.to_string(),
            removed: false,
        };
        if cx.opts.dry_run {
            report.pruned.push(p);
            continue;
        }
        match remove_dest(cx, &st, &tag, &kept).await {
            Ok(None) => {
                p.removed = true;
                state::remove(cx.store, &cx.job.name, &repo, &tag)?;
            }
            Ok(Some(kept_why)) => p.reason = format!("{why}; kept: {kept_why}"),
            Err(e) => p.reason = format!("{why}; removing failed: {e}"),
        }
        report.pruned.push(p);
    }
    Ok(())
}

/// Remove one destination tag; `Some(reason)` when it was left in place on purpose.
async fn remove_dest(
    cx: &Ctx<'_>,
    st: &TagState,
    tag: &str,
    kept: &[(String, String, TagState)],
) -> Result<Option<String>, String> {
    match &cx.job.destination {
        Place::Store { .. } => {
            let r: StoreRef = format!("{}:{tag}", st.destination_repo)
                .parse()
                .map_err(|e: sealift_oci::reference::RefError| e.to_string())?;
            match cx.store.resolve(&r) {
                Ok(d) if d.to_string() == st.destination_digest => {
                    let (Some(repo), Some(t)) = (Some(r.repo.clone()), r.tag.clone()) else {
                        return Err("no tag".into());
                    };
                    cx.store.remove_tag(&repo, &t).map_err(|e| e.to_string())?;
                    Ok(None)
                }
                Ok(_) => Ok(Some("the tag was moved by someone else".into())),
                Err(_) => Ok(None),
            }
        }
        Place::Registry { host, .. } => {
            // Registries delete by digest, which takes every tag naming it along.
            if let Some(other) = kept.iter().find(|k| {
                k.2.destination_repo == st.destination_repo
                    && k.2.destination_digest == st.destination_digest
            }) {
                return Ok(Some(format!(
                    "{} names the same digest (registries delete by digest)",
                    other.2.destination
                )));
            }
            let reg = client(cx.config, host).map_err(|e| e.to_string())?;
            let d: Digest = st
                .destination_digest
                .parse()
                .map_err(|e: sealift_oci::digest::DigestError| e.to_string())?;
            reg.manifest_delete(&st.destination_repo, &d)
                .await
                .map_err(|e| e.to_string())?;
            Ok(None)
        }
        _ => Ok(Some("retention does not apply to layouts".into())),
    }
}

/// The last run of every job that has run, by job name.
pub fn job_status(store: &Store) -> Result<Vec<JobReport>, SyncError> {
    let mut out = Vec::new();
    for j in state::jobs_with_runs(store)? {
        out.extend(state::runs(store, &j, 1)?);
    }
    Ok(out)
}

/// The last `n` runs of `job` (or of every job), newest first.
pub fn job_history(
    store: &Store,
    job: Option<&str>,
    n: usize,
) -> Result<Vec<JobReport>, SyncError> {
    match job {
        Some(j) => Ok(state::runs(store, j, n)?),
        None => {
            let mut all = Vec::new();
            for j in state::jobs_with_runs(store)? {
                all.extend(state::runs(store, &j, n)?);
            }
            all.sort_by_key(|r| std::cmp::Reverse(r.started_ms));
            all.truncate(n);
            Ok(all)
        }
    }
}
