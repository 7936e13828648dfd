//! The copy engine: walk the manifest graph from a source's root to a sink.
//!
//! Order is what keeps a destination consistent: blobs first (in parallel, skipping what the
//! destination has, mounting across repositories of one registry), then child manifests,
//! then the root, then the tag. A copy that fails or is killed never leaves the tag pointing
//! at something incomplete.

use std::collections::HashSet;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use sealift_oci::{Descriptor, Digest, Platform};
use tokio::io::{AsyncRead, ReadBuf};

use crate::convert::{Convert, Converted};
use crate::plan::{rewrite_index, Plan};
use crate::transport::{BlobStream, Root, Sink, Source, TransportError};
use crate::walk::{walk, WalkOptions};
use sealift_layout::Progress;

/// How to copy.
#[derive(Clone, Default)]
pub struct CopyOptions {
    /// Keep only these platforms of an index (empty: all). Attestations follow the
    /// platform they describe.
    pub platforms: Vec<Platform>,
    /// With `platforms`: write a new index holding only the chosen entries (new digest)
    /// instead of the original index bytes over a sparse set of children.
    pub rewrite_index: bool,
    /// With `platforms` and without `rewrite_index`: when the destination refuses the sparse
    /// index (a registry that checks every entry of a pushed index is present), write the
    /// rewritten index instead, and say so in [`CopyReport::filtered_index`].
    pub rewrite_refused_index: bool,
    /// Also copy referrers (SBOMs, signatures, attestations) of everything copied.
    pub referrers: bool,
    /// Push non-distributable (foreign) layers too.
    pub include_nondistributable: bool,
    /// Only say what would be transferred.
    pub dry_run: bool,
    /// Called with bytes moved so far and the total to move.
    pub progress: Option<Progress>,
    /// Called per blob with its digest, bytes moved and size (for one bar per blob).
    pub blob_progress: Option<BlobProgress>,
    /// Recompress layers and/or change the manifest format (new digests; see
    /// [`crate::convert`]).
    pub convert: Option<Convert>,
    /// Admit the image only if its signatures at the source satisfy this policy
    /// ([`crate::signatures`]); checked before anything is written.
    pub verify: Option<sealift_trust::Policy>,
}

/// What a copy did (or would do).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CopyReport {
    /// Where from.
    pub source: String,
    /// Where to.
    pub destination: String,
    /// Digest of the source root.
    pub source_digest: Option<Digest>,
    /// Digest written at the destination (differs only with `rewrite_index`).
    pub destination_digest: Option<Digest>,
    /// Root media type.
    pub media_type: String,
    /// Bytes transferred.
    pub bytes_moved: u64,
    /// Bytes the destination already had (or that were mounted).
    pub bytes_skipped: u64,
    /// Blobs transferred.
    pub blobs_moved: usize,
    /// Blobs skipped (present or mounted).
    pub blobs_skipped: usize,
    /// Blobs mounted from another repository of the same registry.
    pub blobs_mounted: usize,
    /// Manifests written.
    pub manifests_written: usize,
    /// The destination tag already pointed at the source digest with everything present.
    pub up_to_date: bool,
    /// Nothing was written.
    pub dry_run: bool,
    /// Referrers copied.
    pub referrers: usize,
    /// Platforms copied from an index (empty for single manifests or all).
    pub platforms: Vec<String>,
    /// With `convert`: `(source digest, written digest)` of every manifest and index that
    /// changed, children first, the root last.
    pub converted: Vec<(Digest, Digest)>,
    /// The signature policy's verdict, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<sealift_trust::Verdict>,
    /// How a root index of which `platforms` kept only some entries was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered_index: Option<FilteredIndex>,
}

/// How an index filtered by platform was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilteredIndex {
    /// The original bytes over the chosen entries only: the digest is kept.
    Sparse,
    /// Re-serialised with only the chosen entries, as asked (`rewrite_index`): a new digest.
    Rewritten,
    /// Re-serialised because the destination refused the sparse index
    /// (`rewrite_refused_index`): a new digest.
    RewrittenRefused,
}

impl std::fmt::Display for FilteredIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FilteredIndex::Sparse => "sparse index kept (the destination accepted it; digest kept)",
            FilteredIndex::Rewritten => "index rewritten with the chosen platforms (new digest)",
            FilteredIndex::RewrittenRefused => {
                "index rewritten with the chosen platforms: the destination refuses sparse \
                 indexes (new digest)"
            }
        })
    }
}

/// Whether a failed manifest push is a registry refusing an index whose entries are not all
/// present: distribution before 3.0 (and so Harbor and most on-premises registries) checks
/// every entry of a pushed index and answers 400 `MANIFEST_BLOB_UNKNOWN`.
fn refuses_sparse_index(e: &TransportError) -> bool {
    match e {
        TransportError::Registry(sealift_registry::RegistryError::Http {
            status: 400,
            code: Some(code),
            ..
        }) => code == "MANIFEST_BLOB_UNKNOWN",
        TransportError::During { source, .. } => refuses_sparse_index(source),
        _ => false,
    }
}

/// The walk's part of the copy's options.
fn walk_options(opts: &CopyOptions) -> WalkOptions<'_> {
    WalkOptions {
        platforms: &opts.platforms,
        rewrite_index: opts.rewrite_index,
        include_nondistributable: opts.include_nondistributable,
    }
}

/// Per-blob progress callback: digest, bytes done, blob size.
pub type BlobProgress = Arc<dyn Fn(&Digest, u64, u64) + Send + Sync>;

/// Counts bytes as they pass, for progress.
struct Counted {
    inner: BlobStream,
    done: Arc<AtomicU64>,
    total: u64,
    progress: Option<Progress>,
    blob: Descriptor,
    blob_done: u64,
    blob_progress: Option<BlobProgress>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
            if let Some(p) = &self.progress {
                p(done, self.total);
            }
            self.blob_done += n;
            if let Some(p) = &self.blob_progress {
                p(&self.blob.digest, self.blob_done, self.blob.size);
            }
        }
        r
    }
}

/// Copy the image `src` resolves to into `dst`.
pub async fn copy(
    src: Arc<dyn Source>,
    dst: Arc<dyn Sink>,
    opts: &CopyOptions,
) -> Result<CopyReport, TransportError> {
    let mut report = CopyReport {
        source: src.describe(),
        destination: dst.describe(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let root = src
        .resolve()
        .await
        .map_err(|e| e.during(format!("resolving {}", src.describe())))?;
    report.source_digest = Some(root.descriptor.digest.clone());
    report.media_type = root.descriptor.media_type.clone();
    // The policy first: a refused image costs its signatures' fetches and writes nothing.
    if let Some(policy) = &opts.verify {
        report.verdict = Some(crate::signatures::admit(src.as_ref(), &root, policy).await?);
    }
    let mut seen = HashSet::new();
    let walked = walk(src.as_ref(), root, &walk_options(opts), &mut seen).await?;
    // A conversion reads the walked plan and gives the plan to execute instead, with what
    // to check before the tag moves.
    let (mut plan, checks) = match opts.convert.as_ref().filter(|c| !c.is_noop()) {
        Some(conv) => {
            let Converted { plan, checks } =
                crate::convert::convert(src.as_ref(), &walked, conv, opts.include_nondistributable)
                    .await
                    .map_err(|e| e.during(format!("converting {}", src.describe())))?;
            report.converted = plan.converted.clone();
            (plan, Some(checks))
        }
        None => (walked, None),
    };
    let root_node = plan
        .manifests
        .last()
        .ok_or_else(|| TransportError::NotFound("root".into()))?;
    let root_desc = root_node.desc.clone();
    report.destination_digest = Some(root_desc.digest.clone());
    report.media_type = root_desc.media_type.clone();
    report.platforms = plan.platforms.clone();
    if plan.filtered {
        report.filtered_index = Some(if root_node.sparse {
            FilteredIndex::Sparse
        } else {
            FilteredIndex::Rewritten
        });
    }

    // Up to date: the tag already names this digest and every manifest is there.
    if dst.current().await? == Some(root_desc.digest.clone()) {
        let mut all = true;
        for m in &plan.manifests {
            if !dst.has_manifest(&m.desc).await? {
                all = false;
                break;
            }
        }
        if all && !opts.referrers {
            report.up_to_date = true;
            report.bytes_skipped = plan.blobs.iter().map(|b| b.size).sum();
            report.blobs_skipped = plan.blobs.len();
            // Admitted now, though nothing moves: the verdict is kept all the same.
            if !opts.dry_run {
                record_verdict(dst.as_ref(), report.verdict.as_ref()).await?;
            }
            return Ok(report);
        }
    }

    let written = transfer(src.clone(), dst.clone(), &plan, opts, &mut report).await?;
    if let Some(c) = &checks {
        c.verify()?;
    }
    // The destination refused the sparse root and took the rewritten one instead.
    let root_desc = match written {
        Some(d) => {
            report.destination_digest = Some(d.digest.clone());
            report.filtered_index = Some(FilteredIndex::RewrittenRefused);
            if let Some(m) = plan.manifests.last_mut() {
                m.desc = d.clone();
            }
            d
        }
        None => root_desc,
    };
    if opts.dry_run {
        return Ok(report);
    }
    record_verdict(dst.as_ref(), report.verdict.as_ref()).await?;
    dst.tag(&root_desc)
        .await
        .map_err(|e| e.during(format!("tagging {}", dst.describe())))?;

    if opts.referrers {
        // Referrers at the source name the source digests: those of converted manifests
        // would need a new subject (a new digest, breaking signatures), so they stay behind.
        let converted = |d: &Digest| plan.is_converted(d);
        if plan.manifests.iter().any(|m| converted(&m.desc.digest)) {
            tracing::warn!(
                "referrers of converted manifests are not copied (their subject digest changed)"
            );
        }
        let subjects: Vec<Descriptor> = plan
            .manifests
            .iter()
            .filter(|m| !converted(&m.desc.digest))
            .map(|m| m.desc.clone())
            .collect();
        copy_referrers(
            src.clone(),
            dst.clone(),
            subjects,
            opts,
            &mut report,
            &mut seen,
        )
        .await?;
    }
    dst.finish()
        .await
        .map_err(|e| e.during(format!("finishing {}", dst.describe())))?;
    Ok(report)
}

/// Blobs, then manifests. Returns the root actually written when it is not the planned one
/// (a refused sparse index replaced by its rewrite, with `rewrite_refused_index`).
async fn transfer(
    src: Arc<dyn Source>,
    dst: Arc<dyn Sink>,
    plan: &Plan,
    opts: &CopyOptions,
    report: &mut CopyReport,
) -> Result<Option<Descriptor>, TransportError> {
    // Which blobs are missing (HEADs in parallel too).
    let checks: Vec<(Descriptor, bool)> = stream::iter(plan.blobs.iter().cloned())
        .map(|b| {
            let dst = dst.clone();
            async move {
                let has = dst.has_blob(&b).await?;
                Ok::<_, TransportError>((b, has))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    let missing: Vec<Descriptor> = checks
        .iter()
        .filter(|(_, has)| !has)
        .map(|(b, _)| b.clone())
        .collect();
    for (b, has) in &checks {
        if *has {
            report.blobs_skipped += 1;
            report.bytes_skipped += b.size;
        }
    }
    if opts.dry_run {
        report.blobs_moved = missing.len();
        report.bytes_moved = missing.iter().map(|b| b.size).sum();
        for m in &plan.manifests {
            if !dst.has_manifest(&m.desc).await? {
                report.manifests_written += 1;
            }
        }
        return Ok(None);
    }
    let total: u64 = missing.iter().map(|b| b.size).sum();
    let done = Arc::new(AtomicU64::new(0));
    let mounted = Arc::new(AtomicUsize::new(0));
    let mounted_bytes = Arc::new(AtomicU64::new(0));
    let from = src.registry_repo();
    stream::iter(missing.iter().cloned())
        .map(|b| {
            let (src, dst, done, from) = (src.clone(), dst.clone(), done.clone(), from.clone());
            let (mounted, mounted_bytes) = (mounted.clone(), mounted_bytes.clone());
            let progress = opts.progress.clone();
            let blob_progress = opts.blob_progress.clone();
            // A converted blob is read from its temporary file, not from the source.
            let local = plan.local.get(&b.digest).map(|p| p.to_path_buf());
            async move {
                let body: BlobStream = if let Some(path) = local {
                    let f = tokio::fs::File::open(&path).await.map_err(|source| {
                        TransportError::Io {
                            what: format!("opening converted blob {}", path.display()),
                            source,
                        }
                    })?;
                    Box::new(f)
                } else {
                    if let Some((host, repo)) = &from {
                        if dst.mount(&b, host, repo).await.unwrap_or(false) {
                            mounted.fetch_add(1, Ordering::Relaxed);
                            mounted_bytes.fetch_add(b.size, Ordering::Relaxed);
                            return Ok(());
                        }
                    }
                    // A sink that hashes what it takes checks every byte anyway: the
                    // source's own check would hash each blob a second time.
                    let body = if dst.hashes_blobs() {
                        src.blob_unhashed(&b).await
                    } else {
                        src.blob(&b).await
                    };
                    body.map_err(|e| {
                        e.during(format!("reading blob {} from {}", b.digest, src.describe()))
                    })?
                };
                let counted = Counted {
                    inner: body,
                    done,
                    total,
                    progress,
                    blob: b.clone(),
                    blob_done: 0,
                    blob_progress,
                };
                dst.put_blob(&b, Box::new(counted)).await.map_err(|e| {
                    e.during(format!("copying blob {} to {}", b.digest, dst.describe()))
                })
            }
        })
        .buffer_unordered(dst.parallelism().max(1))
        .try_collect::<Vec<()>>()
        .await?;
    let m = mounted.load(Ordering::Relaxed);
    let mb = mounted_bytes.load(Ordering::Relaxed);
    report.blobs_mounted += m;
    report.blobs_skipped += m;
    report.bytes_skipped += mb;
    report.blobs_moved += missing.len() - m;
    report.bytes_moved += total - mb;
    let mut replaced = None;
    for (i, node) in plan.manifests.iter().enumerate() {
        if !node.sparse && dst.has_manifest(&node.desc).await? {
            continue;
        }
        let during = |e: TransportError, d: &Digest| {
            e.during(format!("writing manifest {d} to {}", dst.describe()))
        };
        match dst.put_manifest(&node.desc, &node.bytes, node.sparse).await {
            Ok(()) => {}
            Err(e) if node.sparse && refuses_sparse_index(&e) => {
                let is_root = i + 1 == plan.manifests.len();
                if !(opts.rewrite_refused_index && is_root) {
                    return Err(TransportError::SparseIndexRefused {
                        destination: dst.describe(),
                        digest: node.desc.digest.clone(),
                        refusal: Box::new(e),
                    });
                }
                // Keep what the plan copied: the chosen entries, now all present.
                let bytes = rewrite_index(&node.bytes, &plan.manifest_digests())?;
                let desc = Descriptor::new(
                    node.desc.media_type.clone(),
                    Digest::sha256(&bytes),
                    bytes.len() as u64,
                );
                tracing::info!(
                    "{} refuses the sparse index {}; writing the rewritten index {} instead",
                    dst.describe(),
                    node.desc.digest,
                    desc.digest
                );
                dst.put_manifest(&desc, &bytes, false)
                    .await
                    .map_err(|e| during(e, &desc.digest))?;
                replaced = Some(desc);
            }
            Err(e) => return Err(during(e, &node.desc.digest)),
        }
        report.manifests_written += 1;
    }
    Ok(replaced)
}

/// Hand the policy's verdict (if one was asked for) to the sink, before the tag.
async fn record_verdict(
    dst: &dyn Sink,
    verdict: Option<&sealift_trust::Verdict>,
) -> Result<(), TransportError> {
    let Some(v) = verdict else { return Ok(()) };
    dst.record_verdict(v).await.map_err(|e| {
        e.during(format!(
            "recording the signature verdict at {}",
            dst.describe()
        ))
    })
}

async fn copy_referrers(
    src: Arc<dyn Source>,
    dst: Arc<dyn Sink>,
    mut subjects: Vec<Descriptor>,
    opts: &CopyOptions,
    report: &mut CopyReport,
    seen: &mut HashSet<Digest>,
) -> Result<(), TransportError> {
    let inner = CopyOptions {
        platforms: Vec::new(),
        rewrite_index: false,
        rewrite_refused_index: false,
        convert: None,
        // Referrers are the signatures themselves, SBOMs and attestations: the policy is
        // about the image they refer to.
        verify: None,
        ..opts.clone()
    };
    // cosign keeps signatures, attestations and SBOMs under `sha256-<hex>.sig|.att|.sbom`
    // tags rather than as OCI referrers.
    let tags: HashSet<String> = src.tags().await?.into_iter().collect();
    while let Some(subject) = subjects.pop() {
        for suffix in sealift_trust::found::COSIGN_TAG_SUFFIXES {
            let tag = sealift_trust::found::cosign_tag_with(&subject.digest, suffix);
            if !tags.contains(&tag) {
                continue;
            }
            let root = src
                .resolve_tag(&tag)
                .await
                .map_err(|e| e.during(format!("reading cosign tag {tag}")))?;
            let desc = root.descriptor.clone();
            if seen.contains(&desc.digest) {
                continue;
            }
            let p = walk(src.as_ref(), root, &walk_options(&inner), seen).await?;
            transfer(src.clone(), dst.clone(), &p, &inner, report).await?;
            dst.tag_as(&desc, &tag)
                .await
                .map_err(|e| e.during(format!("tagging {tag} at {}", dst.describe())))?;
            report.referrers += 1;
        }
        let refs = src
            .referrers(&subject)
            .await
            .map_err(|e| e.during(format!("listing referrers of {}", subject.digest)))?;
        for r in refs {
            if seen.contains(&r.digest) {
                continue;
            }
            let bytes = src.manifest(&r).await?;
            let root = Root {
                descriptor: Descriptor::new(r.media_type.clone(), r.digest.clone(), r.size),
                bytes,
            };
            let p = walk(src.as_ref(), root, &walk_options(&inner), seen).await?;
            transfer(src.clone(), dst.clone(), &p, &inner, report).await?;
            dst.add_referrer(&r, &subject).await?;
            report.referrers += 1;
            subjects.extend(p.manifests.iter().map(|m| m.desc.clone()));
        }
    }
    Ok(())
}
