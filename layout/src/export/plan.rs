//! What an export writes: the index.json entries and every blob of the images' graphs (and,
//! asked, their referrers' and cosign tags'), in a stable order, less what a delta's base
//! inventory lists.

use std::collections::HashSet;

use sealift_oci::media_type as mt;
use sealift_oci::{Digest, StoreRef, Tag};
use sealift_store::Store;

use crate::error::LayoutError;
use crate::inventory::Inventory;

pub(super) struct Plan {
    /// index.json entries: descriptor JSON.
    pub(super) entries: Vec<serde_json::Value>,
    /// Every blob to write, in a stable order.
    pub(super) blobs: Vec<(Digest, u64)>,
    pub(super) images: Vec<(String, Digest)>,
    /// Blobs left out of a delta, and their bytes.
    pub(super) omitted: (usize, u64),
}

/// Walk `refs` (and, with `referrers`, their referrers) in the store; a delta leaves out
/// the blobs (not manifests) `base` lists.
pub(super) fn plan(
    store: &Store,
    refs: &[StoreRef],
    referrers: bool,
    base: Option<&Inventory>,
) -> Result<Plan, LayoutError> {
    let mut entries = Vec::new();
    let mut images = Vec::new();
    let mut seen: HashSet<Digest> = HashSet::new();
    let mut blobs = Vec::new();
    let mut listed: HashSet<Digest> = HashSet::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut omitted = (0, 0);
    for r in refs {
        let d = store.resolve(r)?;
        let name = r.to_string();
        let mut roots = vec![(d.clone(), Some(name.clone()))];
        let mut i = 0;
        while i < roots.len() {
            let (root, ref_name) = roots[i].clone();
            i += 1;
            let (nodes, missing) = store.walk(&root)?;
            if let Some((parent, child)) = missing.into_iter().next() {
                return Err(LayoutError::MissingBlob {
                    digest: child,
                    media_type: String::new(),
                    needed_by: format!("{parent} (image {name} is broken; run sealift verify)"),
                });
            }
            for (nd, rec) in &nodes {
                if seen.insert(nd.clone()) {
                    let at_site = base.is_some_and(|b| !rec.manifest && b.digests.contains(nd));
                    if at_site {
                        omitted.0 += 1;
                        omitted.1 += rec.size;
                    } else {
                        blobs.push((nd.clone(), rec.size));
                    }
                }
                if referrers && rec.manifest {
                    // cosign's signatures, attestations and SBOMs under their
                    // `sha256-<hex>.sig|.att|.sbom` tags (as a pull with --referrers keeps
                    // them) travel as entries of the same name, so a site finds them.
                    for (tag, d) in cosign_tags(store, r, nd)? {
                        if !roots.iter().any(|(x, _)| x == &d) {
                            roots.push((d, Some(tag)));
                        }
                    }
                    let mut refs = store.referrers(nd)?;
                    refs.sort();
                    for rd in refs {
                        if !roots.iter().any(|(x, _)| x == &rd) {
                            roots.push((rd, None));
                        }
                    }
                }
            }
            let rec = store
                .record(&root)?
                .ok_or_else(|| sealift_store::Error::NotFound(root.clone()))?;
            let mut entry = serde_json::json!({
                "mediaType": rec.media_type,
                "digest": root.to_string(),
                "size": rec.size,
            });
            if let Some(a) = &rec.artifact_type {
                if rec.subject.is_some() {
                    entry["artifactType"] = serde_json::Value::String(a.clone());
                }
            }
            if let Some(n) = &ref_name {
                // A cosign tag met through --referrers and also selected by name is one entry.
                if !names.insert(n.clone()) {
                    continue;
                }
                entry["annotations"] = serde_json::json!({ mt::ANNOTATION_REF_NAME: n });
                images.push((n.clone(), root.clone()));
            }
            if ref_name.is_some() || listed.insert(root.clone()) {
                entries.push(entry);
            }
        }
    }
    Ok(Plan {
        entries,
        blobs,
        images,
        omitted,
    })
}

/// cosign's tags for the manifest `d` in `r`'s repository that the store holds:
/// `(repo:sha256-<hex>.sig|.att|.sbom, the digest tagged)`.
fn cosign_tags(
    store: &Store,
    r: &StoreRef,
    d: &Digest,
) -> Result<Vec<(String, Digest)>, LayoutError> {
    let mut out = Vec::new();
    for suffix in sealift_trust::found::COSIGN_TAG_SUFFIXES {
        let Ok(tag) = sealift_trust::found::cosign_tag_with(d, suffix).parse::<Tag>() else {
            continue;
        };
        let name = StoreRef::tagged(r.repo.clone(), tag);
        match store.resolve(&name) {
            Ok(digest) => out.push((name.to_string(), digest)),
            Err(sealift_store::Error::UnknownRef(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}
