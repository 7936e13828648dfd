//! Whether an image needs a copy. The no-op fast path: a tag whose source digest (one HEAD,
//! or a local lookup) equals the one recorded when it was last copied is skipped without
//! touching a remote destination; a tag matching `immutable_tags` that was copied before is
//! not even checked.

use std::sync::Arc;

use sealift_copy::place::{Reference, Repository};
use sealift_copy::transport::Source;

use super::cx::{now_secs, Ctx};
use super::list::Image;
use super::report::{result, ImageResult};
use super::state::{self, TagState};

/// An image whose source changed (or was never copied): what its copy needs.
pub(crate) struct Todo<'i> {
    pub img: &'i Image,
    pub drepo: String,
    pub dest: Arc<dyn Repository>,
    pub source: String,
    pub destination: String,
    pub st: Option<TagState>,
    pub digest_s: String,
    pub etag: Option<String>,
    pub src: Arc<dyn Source>,
}

/// Whether the destination still has what the state says. Only asked of local
/// destinations: a registry is trusted, which is what makes a no-op run cost nothing there.
async fn dest_intact(cx: &Ctx<'_>, dest: &dyn Repository, tag: &str, st: &TagState) -> bool {
    if !cx.places.destination.is_local() {
        return true;
    }
    matches!(dest.head(tag).await, Ok(Some(h)) if h.descriptor.digest.to_string() == st.destination_digest)
}

/// Decide whether an image needs a copy: `Err` is its result when it does not (skipped,
/// or failed). Cheap (one HEAD at most), so run for many images at once.
pub(crate) async fn check_image<'i>(cx: &Ctx<'_>, img: &'i Image) -> Result<Todo<'i>, ImageResult> {
    let job = cx.job;
    let drepo = cx.places.dest_repo(&img.repo);
    let from = cx.places.source.repository(&img.repo);
    let dest = cx.places.destination.repository(&drepo);
    let source = format!("{}:{}", from.describe(), img.tag);
    let destination = format!("{}:{}", dest.describe(), img.tag);
    let fail = |reason: String| ImageResult {
        reason: Some(reason),
        ..result("failed", source.clone(), destination.clone())
    };
    let st = match state::get(cx.store, &job.name, &img.repo, &img.tag) {
        Ok(s) => s,
        Err(e) => return Err(fail(format!("reading sync state: {e}"))),
    };
    // What was copied before counts only if it went to the same place, and, with a
    // policy, was admitted by one (else it is checked, and copied or refused, now).
    let same_dest = st
        .as_ref()
        .filter(|s| s.destination == destination && (job.verify.is_none() || s.verified));
    if let (Some(s), Some(imm)) = (same_dest, &job.immutable_tags) {
        if imm.accepts(&img.tag) && !s.source_digest.is_empty() {
            return Err(ImageResult {
                digest: Some(s.source_digest.clone()),
                reason: Some("immutable tag, already copied".into()),
                ..result("skipped", source, destination)
            });
        }
    }
    // The source digest: one HEAD for a registry, a local lookup otherwise. The copy then
    // reads exactly that digest where the place can pin it.
    let head = match from.head(&img.tag).await {
        Ok(Some(h)) => h,
        Ok(None) => return Err(fail("not found at the source".into())),
        Err(e) => return Err(fail(e.to_string())),
    };
    let digest = head.descriptor.digest;
    let etag = head.etag;
    let src = match from
        .source(&Reference::pinned(&img.tag, digest.clone()))
        .await
    {
        Ok(s) => s,
        Err(e) => return Err(fail(e.to_string())),
    };
    let digest_s = digest.to_string();
    if let Some(s) = same_dest {
        if s.source_digest == digest_s && dest_intact(cx, dest.as_ref(), &img.tag, s).await {
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
    Ok(Todo {
        img,
        drepo,
        dest,
        source,
        destination,
        st: st.clone(),
        digest_s,
        etag,
        src,
    })
}
