//! Running the copies of a job's images: checks many at once, copies of one destination
//! repository one after the other, several repositories at once (one at a time where the
//! destination says its repositories share a file).

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::stream::{self, StreamExt};
use sealift_copy::copy::{copy, CopyOptions};
use sealift_copy::place::Reference;

use super::check::{check_image, Todo};
use super::cx::{now_secs, Ctx};
use super::list::{Image, Listing};
use super::report::{result, ImageResult, JobReport};
use super::state::{self, TagState};
use crate::config::RewriteIndex;

/// Destination repositories written at once by one job.
const PARALLEL_IMAGES: usize = 4;

/// Tag checks (a HEAD each) in flight at once per destination repository.
const CHECKS_AT_ONCE: usize = 8;

/// Check and copy every listed image; results go into `report`.
pub(crate) async fn images(cx: &Ctx<'_>, listing: &Listing, serial: bool, report: &mut JobReport) {
    let parallel = if serial { 1 } else { PARALLEL_IMAGES };
    // Images of one destination repository go one after the other: they share layers, and
    // distribution corrupts a repository's blob link when two uploads of one blob race
    // (a manifest PUT then fails with DIGEST_INVALID). The next image finds them present.
    let mut groups: Vec<(String, Vec<&Image>)> = Vec::new();
    for img in &listing.images {
        let d = cx.places.dest_repo(&img.repo);
        match groups.iter_mut().find(|g| g.0 == d) {
            Some(g) => g.1.push(img),
            None => groups.push((d, vec![img])),
        }
    }
    let cancelled = AtomicBool::new(false);
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
                            cancelled.store(true, Ordering::Relaxed);
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
            "refused" => report.refused.push(r),
            _ => report.copied.push(r),
        }
    }
}

/// Copy an image [`check_image`] found changed, and record its state.
async fn copy_image(cx: &Ctx<'_>, t: Todo<'_>) -> ImageResult {
    let job = cx.job;
    let Todo {
        img,
        drepo,
        dest,
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
    let sink = match dest.sink(&Reference::tag(&img.tag)).await {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let copts = CopyOptions {
        platforms: job.platforms.clone(),
        rewrite_index: job.rewrite_index == RewriteIndex::Always,
        rewrite_refused_index: job.rewrite_index == RewriteIndex::Auto,
        referrers: job.referrers,
        dry_run: cx.opts.dry_run,
        verify: job.verify.clone(),
        ..Default::default()
    };
    let rep = match copy(src, sink, &copts).await {
        Ok(r) => r,
        // Refused by `[job.verify]`: nothing was written, and no state is recorded, so the
        // next run checks it again (signed by then, it is copied).
        Err(e) if e.refusal().is_some() => {
            return ImageResult {
                digest: Some(digest_s),
                reason: Some(e.to_string()),
                ..result("refused", source.clone(), destination.clone())
            }
        }
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
            verified: rep.verdict.is_some(),
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
