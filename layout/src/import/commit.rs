//! Committing an imported graph: every blob checked present, manifests committed children
//! first, then the images named, checked against a signature policy when one is given
//! ([`super::signatures`]), and tagged (nothing tagged until its whole graph is in, nothing
//! refused tagged at all).

use std::collections::{HashMap, HashSet};
use std::io::Read;

use sealift_oci::manifest::{Role, MAX_DEPTH, MAX_MANIFEST_SIZE};
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, ManifestView, Repo, StoreRef, Tag};
use sealift_store::{IngestBatch, Lease, ManifestOptions, PutOutcome, Store};
use sealift_trust::{Verdict, STATE_NAMESPACE};

use super::options::{count, ImportOptions, ImportReport, ImportedImage, RefusedImage};
use super::signatures::{cosign_subject, Admission};
use crate::error::LayoutError;
use crate::format::ANNOTATION_BASE;

pub(super) type BlobSource<'a> =
    dyn FnMut(&Digest, u64, &str) -> Result<Option<Box<dyn Read>>, LayoutError> + 'a;

/// index.json's name for messages, and its parse.
fn parse_index(index: &[u8], name: &str) -> Result<(String, ManifestView), LayoutError> {
    let index_name = format!("{name}/index.json");
    let view = crate::format::parse_index(index, &index_name)?;
    Ok((index_name, view))
}

/// Before anything is committed as a manifest or tagged: every blob the images need must be
/// in the store by now (a tarball's blobs were streamed in; a delta bundle counts on the
/// site's store for the rest). Names every missing digest and the images needing it.
pub(super) fn check_complete(store: &Store, index: &[u8], name: &str) -> Result<(), LayoutError> {
    let (_, view) = parse_index(index, name)?;
    let mut missing: std::collections::BTreeMap<Digest, Vec<String>> = Default::default();
    for desc in &view.manifests {
        let image = desc
            .ref_name()
            .map(str::to_string)
            .unwrap_or_else(|| desc.digest.to_string());
        let mut stack = vec![(desc.clone(), 1)];
        let mut seen = HashSet::new();
        while let Some((d, depth)) = stack.pop() {
            if !seen.insert(d.digest.clone()) {
                continue;
            }
            if depth > MAX_DEPTH && mt::is_manifest(&d.media_type) {
                return Err(too_deep(&image, &desc.digest, d.digest, depth));
            }
            if store.record(&d.digest)?.is_none() {
                let who = missing.entry(d.digest.clone()).or_default();
                if !who.contains(&image) {
                    who.push(image.clone());
                }
                continue;
            }
            if !mt::is_manifest(&d.media_type) || d.size > MAX_MANIFEST_SIZE as u64 {
                continue;
            }
            let bytes = store.read_small(&d.digest, MAX_MANIFEST_SIZE as u64)?;
            // A manifest that does not parse is reported, with its digest, when committed.
            let Ok(v) = ManifestView::parse(&bytes, Some(&d.media_type)) else {
                continue;
            };
            stack.extend(
                v.children()
                    .into_iter()
                    .filter(|c| c.required)
                    .map(|c| (c.descriptor.clone(), depth + 1)),
            );
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let base = view
        .annotations
        .get(ANNOTATION_BASE)
        .and_then(|b| b.parse().ok());
    Err(LayoutError::Incomplete {
        bundle: name.to_string(),
        base,
        missing: missing.into_iter().collect(),
    })
}

/// Commit the graph named by index.json, children first, then set tags.
#[allow(clippy::too_many_arguments)]
pub(super) fn finish(
    store: &Store,
    lease: &Lease,
    index: &[u8],
    name: &str,
    opts: &ImportOptions,
    default_repo: Option<Repo>,
    report: &mut ImportReport,
    source: &mut BlobSource<'_>,
) -> Result<(), LayoutError> {
    let (index_name, view) = parse_index(index, name)?;
    let mut done = HashSet::new();
    let mut imported = Vec::new();
    // Blobs and manifests commit a batch at a time (group commit), children before their
    // manifest; all of them before anything is named or tagged.
    let mut batch = store.batch(lease);
    for desc in &view.manifests {
        if !mt::is_manifest(&desc.media_type) {
            report.warnings.push(format!(
                "{index_name}: entry {} has media type {}, not an image; stored but not tagged",
                desc.digest, desc.media_type
            ));
            put_blob(&mut batch, desc, &index_name, source, report, true)?;
            continue;
        }
        let image = desc
            .ref_name()
            .map(str::to_string)
            .unwrap_or_else(|| desc.digest.to_string());
        put_node(
            store,
            lease,
            &mut batch,
            desc,
            &image,
            &index_name,
            source,
            report,
            &mut done,
        )?;
        imported.push(desc);
    }
    batch.finish()?;

    // Name every image before tagging any, so a naming error leaves no tag behind.
    // Referrers (manifests with a subject) live through their subject and never take --tag.
    let mut referrers = HashSet::new();
    for d in &imported {
        if store
            .record(&d.digest)?
            .is_some_and(|r| r.subject.is_some())
        {
            referrers.insert(d.digest.clone());
        }
    }
    let untagged = imported
        .iter()
        .filter(|d| d.ref_name().is_none() && !referrers.contains(&d.digest))
        .count();
    let mut plan: Vec<(&Descriptor, Option<(Repo, Tag)>)> = Vec::new();
    for desc in imported {
        let target = match desc.ref_name() {
            Some(n) => Some(name_from_ref(n, opts, default_repo.as_ref(), &index_name)?),
            None if referrers.contains(&desc.digest) => None,
            None => match &opts.tag {
                Some(t) if untagged == 1 => Some((
                    t.repo.clone(),
                    t.tag
                        .clone()
                        .ok_or_else(|| LayoutError::Naming(format!("--tag {t} needs a tag")))?,
                )),
                Some(t) => {
                    return Err(LayoutError::Naming(format!(
                    "--tag {t} is ambiguous: {index_name} has {untagged} images without a ref name"
                )))
                }
                // Referrers (and other unnamed entries) are kept by their subject or by a pin.
                None => None,
            },
        };
        plan.push((desc, target));
    }
    let (verdicts, refused) = admit(store, opts, &view.manifests, &plan, &referrers, report)?;
    for (desc, target) in plan {
        // A refused image is not tagged or pinned, nor are its cosign signature tags.
        let subject = desc.ref_name().and_then(cosign_subject);
        if refused.contains(&desc.digest) || subject.is_some_and(|d| refused.contains(&d)) {
            continue;
        }
        let reference = match target {
            Some((repo, tag)) => {
                // Importing the same bundle again changes nothing, not even tag times.
                let current = store.resolve(&StoreRef::tagged(repo.clone(), tag.clone()));
                if current.ok().as_ref() != Some(&desc.digest) {
                    store.set_tag(&repo, &tag, &desc.digest)?;
                }
                Some(format!("{repo}:{tag}"))
            }
            None => {
                if !referrers.contains(&desc.digest) {
                    store.pin(&desc.digest)?;
                    report.warnings.push(format!(
                        "{}: no ref name in {index_name}; pinned by digest (pass --tag REPO:TAG to name it)",
                        desc.digest
                    ));
                }
                None
            }
        };
        report.images.push(ImportedImage {
            reference,
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            verdict: verdicts.get(&desc.digest).cloned(),
        });
    }
    Ok(())
}

/// With a signature policy: check every image about to be tagged or pinned (not the
/// referrers and cosign tags, which are the signatures) against what the bundle carries,
/// record the verdicts in the store's state (as a pull does) before any tag, and list the
/// refused in the report. Returns the verdicts and the refused digests.
fn admit(
    store: &Store,
    opts: &ImportOptions,
    entries: &[Descriptor],
    plan: &[(&Descriptor, Option<(Repo, Tag)>)],
    referrers: &HashSet<Digest>,
    report: &mut ImportReport,
) -> Result<(HashMap<Digest, Verdict>, HashSet<Digest>), LayoutError> {
    let (mut verdicts, mut refused) = (HashMap::new(), HashSet::new());
    let Some(policy) = &opts.verify else {
        return Ok((verdicts, refused));
    };
    let mut admission = Admission::new(store, policy, entries);
    for (desc, target) in plan {
        if referrers.contains(&desc.digest) || desc.ref_name().and_then(cosign_subject).is_some() {
            continue;
        }
        match admission.check(desc)? {
            Ok(v) => {
                store.state_put(STATE_NAMESPACE, desc.digest.to_string().as_bytes(), &v)?;
                verdicts.insert(desc.digest.clone(), v);
            }
            Err(error) => {
                let image = match target {
                    Some((repo, tag)) => format!("{repo}:{tag}"),
                    None => desc.digest.to_string(),
                };
                refused.insert(desc.digest.clone());
                report.refused.push(RefusedImage {
                    image,
                    digest: desc.digest.clone(),
                    reason: error.to_string(),
                    error,
                });
            }
        }
    }
    store.state_flush()?;
    Ok((verdicts, refused))
}

/// Turn a ref name into repo and tag: `repo:tag` as is, a bare `tag` under `--tag`'s
/// repository or the layout's file name.
fn name_from_ref(
    n: &str,
    opts: &ImportOptions,
    default_repo: Option<&Repo>,
    index_name: &str,
) -> Result<(Repo, Tag), LayoutError> {
    let last = n.rsplit('/').next().unwrap_or(n);
    if last.contains(':') && !n.contains('@') {
        let r: StoreRef = n.parse().map_err(|e| {
            LayoutError::Naming(format!(
                "{index_name}: ref name {n:?} is not a valid repo:tag: {e}"
            ))
        })?;
        if let Some(tag) = r.tag {
            return Ok((r.repo, tag));
        }
    }
    let tag: Tag = n.parse().map_err(|e| {
        LayoutError::Naming(format!(
            "{index_name}: ref name {n:?} is neither repo:tag nor a tag: {e}"
        ))
    })?;
    let repo = opts
        .tag
        .as_ref()
        .map(|t| t.repo.clone())
        .or_else(|| default_repo.cloned())
        .ok_or_else(|| {
            LayoutError::Naming(format!(
                "{index_name}: ref name {n:?} is a bare tag; pass --tag REPO:TAG to choose the repository"
            ))
        })?;
    Ok((repo, tag))
}

fn entry_of(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().as_str(), d.hex())
}

fn put_blob(
    batch: &mut IngestBatch<'_>,
    desc: &Descriptor,
    needed_by: &str,
    source: &mut BlobSource<'_>,
    report: &mut ImportReport,
    required: bool,
) -> Result<bool, LayoutError> {
    // Ask the source first even when the store has the blob: a directory layout's symlinks
    // are refused whether or not their bytes would be needed.
    let reader = source(&desc.digest, desc.size, &desc.media_type)?;
    let mut reader = match reader {
        Some(r) => r,
        None => {
            // Absent from the layout: fine when the store or the batch has it.
            if batch.hold(&desc.digest)?.is_some() {
                count(report, &desc.digest, PutOutcome::Present, desc.size);
                return Ok(true);
            }
            if !required {
                return Ok(false);
            }
            return Err(LayoutError::MissingBlob {
                digest: desc.digest.clone(),
                media_type: desc.media_type.clone(),
                needed_by: needed_by.to_string(),
            });
        }
    };
    let outcome = batch
        .put_blob(&desc.digest, desc.size, &desc.media_type, &mut reader)
        .map_err(|e| LayoutError::Blob {
            entry: entry_of(&desc.digest),
            source: e,
        })?;
    count(report, &desc.digest, outcome, desc.size);
    Ok(true)
}

/// The bytes of the manifest `desc`: the store's when it has them (held for this import),
/// else the layout's, read whole (a manifest is at most 4 MiB) and checked against the
/// descriptor's size and digest before anything parses them.
fn manifest_bytes(
    store: &Store,
    lease: &Lease,
    desc: &Descriptor,
    needed_by: &str,
    source: &mut BlobSource<'_>,
    report: &mut ImportReport,
) -> Result<Vec<u8>, LayoutError> {
    let reader = source(&desc.digest, desc.size, &desc.media_type)?;
    if store.hold(lease, &desc.digest)?.is_some() {
        count(report, &desc.digest, PutOutcome::Present, desc.size);
        return Ok(store.read_small(&desc.digest, MAX_MANIFEST_SIZE as u64)?);
    }
    let Some(reader) = reader else {
        return Err(LayoutError::MissingBlob {
            digest: desc.digest.clone(),
            media_type: desc.media_type.clone(),
            needed_by: needed_by.to_string(),
        });
    };
    let bad = |source| LayoutError::Blob {
        entry: entry_of(&desc.digest),
        source,
    };
    let mut buf = Vec::with_capacity(desc.size as usize);
    reader
        .take(desc.size + 1)
        .read_to_end(&mut buf)
        .map_err(|source| {
            bad(sealift_store::Error::Read {
                digest: desc.digest.clone(),
                source,
            })
        })?;
    if buf.len() as u64 != desc.size {
        return Err(bad(sealift_store::Error::SizeMismatch {
            digest: desc.digest.clone(),
            expected: desc.size,
            actual: buf.len() as u64,
            truncated: buf.len() as u64 > desc.size,
        }));
    }
    let actual = Digest::of(desc.digest.algorithm(), &buf);
    if actual != desc.digest {
        return Err(bad(sealift_store::Error::DigestMismatch {
            expected: desc.digest.clone(),
            actual,
        }));
    }
    count(report, &desc.digest, PutOutcome::Written, desc.size);
    Ok(buf)
}

fn too_deep(image: &str, root: &Digest, at: Digest, depth: usize) -> LayoutError {
    LayoutError::Blob {
        entry: format!("image {image}"),
        source: sealift_store::Error::TooDeep {
            root: root.clone(),
            at,
            depth,
        },
    }
}

/// Store the manifest `desc` (of the image `image`) and everything under it, each manifest
/// committed after its children. An explicit stack, not recursion: a hostile chain thousands
/// deep must be refused past [`MAX_DEPTH`], before its bytes are read, not overflow ours.
#[allow(clippy::too_many_arguments)]
fn put_node(
    store: &Store,
    lease: &Lease,
    batch: &mut IngestBatch<'_>,
    desc: &Descriptor,
    image: &str,
    needed_by: &str,
    source: &mut BlobSource<'_>,
    report: &mut ImportReport,
    done: &mut HashSet<Digest>,
) -> Result<(), LayoutError> {
    enum Step {
        Visit(Descriptor, String, usize),
        Commit(Descriptor, Vec<u8>),
    }
    let root = desc.digest.clone();
    let mut steps = vec![Step::Visit(desc.clone(), needed_by.to_string(), 1)];
    while let Some(step) = steps.pop() {
        let (desc, needed_by, depth) = match step {
            Step::Commit(desc, bytes) => {
                batch.put_manifest(
                    &bytes,
                    ManifestOptions {
                        expected: Some(&desc.digest),
                        media_type: Some(&desc.media_type),
                        sparse: false,
                    },
                )?;
                continue;
            }
            Step::Visit(desc, needed_by, depth) => (desc, needed_by, depth),
        };
        if !done.insert(desc.digest.clone()) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(too_deep(image, &root, desc.digest, depth));
        }
        if desc.size > MAX_MANIFEST_SIZE as u64 {
            return Err(LayoutError::Store(sealift_store::Error::Manifest {
                digest: desc.digest.clone(),
                source: sealift_oci::manifest::ManifestError::TooLarge(desc.size as usize),
            }));
        }
        let bytes = manifest_bytes(store, lease, &desc, &needed_by, source, report)?;
        let view = ManifestView::parse(&bytes, Some(&desc.media_type)).map_err(|source| {
            sealift_store::Error::Manifest {
                digest: desc.digest.clone(),
                source,
            }
        })?;
        let me = desc.digest.to_string();
        let mut entries = Vec::new();
        for child in view.children() {
            if child.role == Role::Manifest {
                entries.push(Step::Visit(child.descriptor.clone(), me.clone(), depth + 1));
            } else {
                put_blob(batch, child.descriptor, &me, source, report, child.required)?;
            }
        }
        for w in &view.warnings {
            report.warnings.push(format!("{me}: {w}"));
        }
        // Pushed before its entries, so committed after all of them; the first entry is
        // walked first.
        steps.push(Step::Commit(desc, bytes));
        steps.extend(entries.into_iter().rev());
    }
    Ok(())
}
