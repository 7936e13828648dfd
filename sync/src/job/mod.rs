//! Running a sync job: list what the source has, choose tags, copy what changed, apply
//! retention, and remember what was seen (per-tag state and run reports in the store).
//!
//! A job goes through the place interface only ([`sealift_copy::place`]): its source and
//! destination are opened once at its start (`open.rs`, the one place the config's
//! backends are named), and every listing, HEAD, delete, source and sink is asked of them.
//!
//! | file | does |
//! |---|---|
//! | `open.rs` | the registry client pool from `[[registry]]`, opening places, naming destination repositories |
//! | `list.rs` | listing the source: catalog, tags, selection |
//! | `check.rs` | whether an image changed (the no-op fast path) |
//! | `run.rs` | checking and copying the images, recording their state |
//! | `retention.rs` | `keep_last` and `prune_gone` |
//! | `bundle.rs` | destinations written as one bundle (layout tarballs) |
//! | `report.rs` | what a run reports |
//! | `state.rs` | what a job remembers between runs, in the store |
//! | `cx.rs` | what every step shares: options, opened places, the job-level error |
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

mod bundle;
mod check;
mod cx;
mod list;
mod open;
mod report;
mod retention;
mod run;
pub mod state;

use std::sync::Arc;
use std::time::Instant;

use sealift_copy::place::Writes;
use sealift_copy::transport::TransportError;
use sealift_store::Store;

use crate::config::{Config, JobConfig};

pub use cx::{RunOptions, SyncError};
pub use open::{clients, RESUME_TTL};
pub use report::{ImageCallback, ImageResult, JobReport, PruneResult};

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
        started_ms: cx::now_ms(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let pool = match &opts.clients {
        Some(c) => c.clone(),
        None => Arc::new(clients(config)),
    };
    let cx = cx::Ctx {
        store,
        job,
        opts,
        places: open::places(store, &pool, job),
    };
    match list::list_source(&cx).await {
        Err(e) => report.error = Some(e),
        Ok(mut listing) => {
            let keep = retention::keep_set(&cx, &listing)?;
            if let Some(keep) = &keep {
                listing
                    .images
                    .retain(|i| keep.contains(&(i.repo.clone(), i.tag.clone())));
            }
            match cx.places.destination.writes() {
                Writes::Bundle(b) => bundle::bundle(&cx, &listing, b.as_ref(), &mut report).await?,
                Writes::Images { serial } => {
                    run::images(&cx, &listing, serial, &mut report).await;
                    if !report.cancelled && report.error.is_none() {
                        retention::retention(&cx, &listing, keep.as_ref(), &mut report).await?;
                    }
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
