//! A destination written as one bundle (a layout tarball): every chosen store image in one
//! tarball, written again only when the set of images or their digests changed. The
//! bundle is written by the place ([`Bundle::write`]); this decides whether, and reports.

use sealift_copy::place::Bundle;
use sealift_oci::{Digest, Repo, StoreRef, Tag};

use super::cx::{now_secs, Ctx, SyncError};
use super::list::Listing;
use super::report::{ImageResult, JobReport};
use super::state::{self, TagState};

/// Write the bundle of `listing`'s images if they changed since the last one.
pub(crate) async fn bundle(
    cx: &Ctx<'_>,
    listing: &Listing,
    to: &dyn Bundle,
    report: &mut JobReport,
) -> Result<(), SyncError> {
    // Each image's digest now (local lookups: a bundle's source is the store); an image
    // whose tag names nothing the store has is reported but not bundled.
    let mut found = Vec::new();
    for img in &listing.images {
        let from = cx.places.source.repository(&img.repo);
        let dest = cx.places.destination.repository(&img.repo);
        let digest = match from.head(&img.tag).await {
            Ok(Some(h)) => Some(h.descriptor.digest),
            _ => None,
        };
        found.push((img, digest, from.describe(), dest.describe()));
    }
    let mut refs = Vec::new();
    let mut sig = Vec::new();
    for (img, d, _, _) in &found {
        let Some(d) = d else { continue };
        let (Ok(r), Ok(t)) = (img.repo.parse::<Repo>(), img.tag.parse::<Tag>()) else {
            continue;
        };
        refs.push(StoreRef::tagged(r, t));
        sig.push(format!("{}:{}@{d}", img.repo, img.tag));
    }
    sig.sort();
    let sig = Digest::sha256(sig.join("\n").as_bytes()).to_string();
    let st = state::get(cx.store, &cx.job.name, "", "bundle")?;
    let per_image = |outcome: &str, reason: Option<&str>| -> Vec<ImageResult> {
        found
            .iter()
            .map(|(i, d, from, dest)| ImageResult {
                outcome: outcome.into(),
                source: format!("{from}:{}", i.tag),
                destination: format!("{dest}:{}", i.tag),
                digest: d.as_ref().map(|d| d.to_string()),
                bytes: 0,
                reason: reason.map(str::to_string),
            })
            .collect()
    };
    if st.as_ref().is_some_and(|s| s.source_digest == sig) && to.exists() {
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
    match to.write(cx.store, refs, cx.job.referrers).await {
        Ok(bytes) => {
            report.copied = per_image("copied", None);
            report.bytes = bytes;
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
                    destination: to.describe(),
                    ..Default::default()
                },
            )?;
        }
        Err(e) => report.error = Some(e.to_string()),
    }
    Ok(())
}
