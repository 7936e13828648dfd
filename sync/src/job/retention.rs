//! Retention: which tags to keep (`keep_last`, decided before copying so a tag that would
//! be pruned is never copied first) and removing the destination tags this job wrote whose
//! source tag is gone (`prune_gone`) or that fell outside the kept set. Only tags the job
//! itself recorded are ever touched.

use std::collections::{BTreeMap, HashMap, HashSet};

use sealift_copy::place::Deleted;
use sealift_oci::Digest;

use super::cx::{Ctx, SyncError};
use super::list::Listing;
use super::report::{JobReport, PruneResult};
use super::state::{self, TagState};
use crate::config::select;

/// A source `(repository, tag)`.
pub(crate) type Key = (String, String);

/// With `keep_last`: the `(source repo, tag)`s to keep, per destination repository the N
/// highest versions (or, when not all tags are versions, the N most recently first copied;
/// tags not copied yet count as newest) among the tags selected now and those the job
/// copied before whose source tag still exists.
pub(crate) fn keep_set(cx: &Ctx<'_>, listing: &Listing) -> Result<Option<HashSet<Key>>, SyncError> {
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
            .entry(cx.places.dest_repo(&i.repo))
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

/// Remove destination tags this job wrote whose source tag is gone, and those outside the
/// `keep_last` set.
pub(crate) async fn retention(
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
    let dest = cx.places.destination.repository(&st.destination_repo);
    if dest.deletes_by_digest() {
        if let Some(other) = kept.iter().find(|k| {
            k.2.destination_repo == st.destination_repo
                && k.2.destination_digest == st.destination_digest
        }) {
            return Ok(Some(format!(
                "{} names the same digest (registries delete by digest)",
                other.2.destination
            )));
        }
    }
    let d: Digest = st
        .destination_digest
        .parse()
        .map_err(|e: sealift_oci::digest::DigestError| e.to_string())?;
    match dest.delete(tag, &d).await.map_err(|e| e.to_string())? {
        Deleted::Removed | Deleted::Gone => Ok(None),
        Deleted::Moved(_) => Ok(Some("the tag was moved by someone else".into())),
    }
}
