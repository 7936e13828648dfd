//! The graph walk: from a source's root to the plan of what to copy, children before
//! parents, with platform filtering of indexes.

use std::collections::HashSet;

use sealift_oci::manifest::{ManifestKind, Role, MAX_DEPTH};
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, ManifestView, Platform};

use crate::plan::{parse, rewrite_index, Node, Plan};
use crate::transport::{Root, Source, TransportError};

/// What the walk keeps (the parts of the copy's options it reads).
pub(crate) struct WalkOptions<'a> {
    /// Keep only these platforms of an index (empty: all); attestations follow the
    /// platform they describe.
    pub(crate) platforms: &'a [Platform],
    /// With `platforms`: a new index with only the chosen entries instead of a sparse one.
    pub(crate) rewrite_index: bool,
    /// Keep non-distributable (foreign) layers in the blob list.
    pub(crate) include_nondistributable: bool,
}

/// Which entries of an index to keep.
fn select<'a>(view: &'a ManifestView, platforms: &[Platform]) -> Vec<&'a Descriptor> {
    if platforms.is_empty() {
        return view.manifests.iter().collect();
    }
    let chosen: HashSet<&Digest> = view
        .manifests
        .iter()
        .filter(|d| d.attests().is_none())
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| !p.is_unknown() && platforms.iter().any(|f| f.selects(p)))
        })
        .map(|d| &d.digest)
        .collect();
    view.manifests
        .iter()
        .filter(|d| chosen.contains(&d.digest) || d.attests().is_some_and(|a| chosen.contains(&a)))
        .collect()
}

/// One step of the plan's walk: visit a manifest (fetching its bytes unless given), or emit
/// a visited one once everything it names has been emitted.
enum Step {
    Visit {
        desc: Descriptor,
        bytes: Option<Vec<u8>>,
        depth: usize,
    },
    Emit(Node),
}

/// Walk the graph from `root` with an explicit stack (a hostile chain thousands deep must
/// not overflow ours), children before parents, and refuse to go past
/// [`MAX_DEPTH`](sealift_oci::manifest::MAX_DEPTH) before fetching anything there.
pub(crate) async fn walk(
    src: &dyn Source,
    root: Root,
    opts: &WalkOptions<'_>,
    seen: &mut HashSet<Digest>,
) -> Result<Plan, TransportError> {
    let mut plan = Plan::default();
    let mut blob_seen = HashSet::new();
    let root_digest = root.descriptor.digest.clone();
    let mut steps = vec![Step::Visit {
        desc: root.descriptor,
        bytes: Some(root.bytes),
        depth: 1,
    }];
    while let Some(step) = steps.pop() {
        let (desc, bytes, depth) = match step {
            Step::Emit(node) => {
                plan.manifests.push(node);
                continue;
            }
            Step::Visit { desc, bytes, depth } => (desc, bytes, depth),
        };
        if seen.contains(&desc.digest) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(sealift_store::Error::TooDeep {
                root: root_digest,
                at: desc.digest,
                depth,
            }
            .into());
        }
        let bytes = match bytes {
            Some(b) => b,
            None => src
                .manifest(&desc)
                .await
                .map_err(|e| e.during(format!("reading manifest {}", desc.digest)))?,
        };
        seen.insert(desc.digest.clone());
        let children = visit(desc, bytes, depth == 1, opts, &mut plan, &mut blob_seen)?;
        // Reversed, so the first child is walked first, as listed.
        for child in children.into_iter().rev() {
            steps.push(match child {
                Step::Visit { desc, .. } => Step::Visit {
                    desc,
                    bytes: None,
                    depth: depth + 1,
                },
                emit => emit,
            });
        }
    }
    Ok(plan)
}

/// One manifest of the plan: its blobs go into `plan`; returned are the steps that follow
/// (the entries of an index to visit, then this manifest's emission), in walking order.
fn visit(
    desc: Descriptor,
    bytes: Vec<u8>,
    is_root: bool,
    opts: &WalkOptions<'_>,
    plan: &mut Plan,
    blob_seen: &mut HashSet<Digest>,
) -> Result<Vec<Step>, TransportError> {
    let view = parse(&desc, &bytes)?;
    for w in &view.warnings {
        tracing::warn!("{}: {w}", desc.digest);
    }
    let mut desc = desc;
    let mut bytes = bytes;
    let mut sparse = false;
    let mut next = Vec::new();
    if view.kind == ManifestKind::Index {
        let keep = select(&view, opts.platforms);
        if keep.is_empty() && !view.manifests.is_empty() {
            let have: Vec<String> = view
                .manifests
                .iter()
                .filter_map(|d| {
                    d.platform
                        .as_ref()
                        .filter(|p| !p.is_unknown())
                        .map(|p| p.to_string())
                })
                .collect();
            return Err(TransportError::NotFound(format!(
                "no entry of {} matches the requested platforms (it has {})",
                desc.digest,
                have.join(", ")
            )));
        }
        if is_root {
            plan.platforms = keep
                .iter()
                .filter(|d| d.attests().is_none())
                .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                .collect();
        }
        next.extend(keep.iter().map(|child| Step::Visit {
            desc: (*child).clone(),
            bytes: None,
            depth: 0,
        }));
        if keep.len() < view.manifests.len() {
            plan.filtered |= is_root;
            if opts.rewrite_index {
                let digests: HashSet<Digest> = keep.iter().map(|d| d.digest.clone()).collect();
                bytes = rewrite_index(&bytes, &digests)?;
                desc = Descriptor::new(
                    desc.media_type.clone(),
                    Digest::sha256(&bytes),
                    bytes.len() as u64,
                );
            } else {
                sparse = true;
            }
        }
    } else {
        for c in view.children() {
            if c.role == Role::Manifest {
                continue;
            }
            let d = c.descriptor;
            if mt::is_non_distributable(&d.media_type) && !opts.include_nondistributable {
                continue;
            }
            if blob_seen.insert(d.digest.clone()) {
                plan.blobs.push(d.clone());
            }
        }
    }
    // Last here, so pushed first and popped after every entry's own steps.
    next.push(Step::Emit(Node {
        desc,
        bytes,
        sparse,
    }));
    Ok(next)
}
