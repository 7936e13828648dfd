//! The manifest graph: storing and reading manifests, their recorded edges and referrers,
//! walks from a root, and linking a whole graph before a tag or pin names it.

use crate::blob::PutOutcome;
use crate::error::{Error, Result};
use crate::kv::Transactional;
use crate::lease::Lease;
use crate::record::{self, role_of, BlobRecord, BlobRecordRef, EdgeRecord};
use crate::store::Store;
use crate::tx::{abort, link_child};
use sealift_oci::digest::Digest;
use sealift_oci::manifest::{ManifestView, Role, MAX_MANIFEST_SIZE};

/// The digest a `blobs` key (or the child half of an edge key) names.
pub(crate) fn key_digest(k: &[u8]) -> Result<Digest> {
    Digest::from_key(k)
        .map(|(d, _)| d)
        .ok_or_else(|| Error::Corrupt {
            tree: "blobs",
            reason: "bad key".into(),
        })
}

/// What [`Store::walk_sized`] finds, node by node.
pub(crate) enum Visit<'a> {
    /// A node read from its record (the root, manifests, and children whose edge could
    /// not stand for the record).
    Record { key: &'a [u8], value: &'a [u8] },
    /// A config or layer behind a required edge from `parent`: its size as the edge
    /// recorded it, its record not read.
    Leaf {
        key: &'a [u8],
        size: u64,
        parent: &'a [u8],
    },
    /// A required child without a record, with the parent that needs it.
    Missing { parent: &'a [u8], child: &'a [u8] },
}

/// What [`Store::walk_sized`] calls for each node.
pub(crate) type SizedVisitor<'a> = dyn FnMut(Visit<'_>) -> Result<()> + 'a;

/// Options for [`Store::put_manifest`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ManifestOptions<'a> {
    /// The digest the caller asked for; the bytes must hash to it.
    pub expected: Option<&'a Digest>,
    /// Media type from the descriptor or Content-Type; must agree with the bytes.
    pub media_type: Option<&'a str>,
    /// Accept an index whose entries are not all present (a sparse, platform-filtered
    /// copy). Image manifests always need their config and distributable layers.
    pub sparse: bool,
}

/// Hash and parse manifest bytes as [`Store::put_manifest`] takes them: refuses (naming the
/// digest) a digest or media type that disagrees, more than 4 MiB, or bad JSON.
pub(crate) fn check_manifest(
    bytes: &[u8],
    opts: &ManifestOptions<'_>,
) -> Result<(Digest, ManifestView)> {
    let alg = opts
        .expected
        .map(|d| d.algorithm())
        .unwrap_or(sealift_oci::digest::Algorithm::Sha256);
    let digest = Digest::of(alg, bytes);
    if let Some(e) = opts.expected {
        if e != &digest {
            return Err(Error::DigestMismatch {
                expected: e.clone(),
                actual: digest,
            });
        }
    }
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(Error::Manifest {
            digest,
            source: sealift_oci::manifest::ManifestError::TooLarge(bytes.len()),
        });
    }
    let view = ManifestView::parse(bytes, opts.media_type).map_err(|source| Error::Manifest {
        digest: digest.clone(),
        source,
    })?;
    for w in &view.warnings {
        tracing::warn!("{digest}: {w}");
    }
    Ok((digest, view))
}

/// A stored manifest.
#[derive(Clone, Debug)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// Its parsed view.
    pub view: ManifestView,
    /// Whether it was new to the store.
    pub outcome: PutOutcome,
}

/// One outgoing edge, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Child digest.
    pub child: Digest,
    /// Whether the parent is broken without it.
    pub required: bool,
    /// What it is to the parent.
    pub role: Role,
}

/// What [`Store::walk`] finds: the nodes present (root first) and the required
/// (parent, child) edges whose child is absent.
pub type Graph = (Vec<(Digest, BlobRecord)>, Vec<(Digest, Digest)>);

impl Store {
    /// Store manifest bytes exactly as given. Refuses (naming the digest) a manifest over
    /// 4 MiB, bad JSON, a digest or media type that disagrees, or a required child that is
    /// not in the store; records edges and the referrer link in the same transaction.
    pub fn put_manifest(
        &self,
        lease: &Lease,
        bytes: &[u8],
        opts: ManifestOptions<'_>,
    ) -> Result<StoredManifest> {
        let (digest, view) = check_manifest(bytes, &opts)?;
        match self.hold(lease, &digest)? {
            Some(rec) if rec.manifest => {
                return Ok(StoredManifest {
                    digest,
                    view,
                    outcome: PutOutcome::Present,
                })
            }
            // Stored as a plain blob (a layout's blobs arrive before anyone knows which are
            // manifests): the file is verified already, so only the graph is committed.
            Some(_) => {
                self.commit(
                    lease,
                    &digest,
                    bytes.len() as u64,
                    &view.media_type,
                    None,
                    Some((&view, opts.sparse)),
                )?;
                return Ok(StoredManifest {
                    digest,
                    view,
                    outcome: PutOutcome::Present,
                });
            }
            None => {}
        }
        let staged = self.stage(lease, &digest, bytes.len() as u64, &mut &bytes[..], true)?;
        let name = staged.name().to_string();
        let r = self.commit(
            lease,
            &digest,
            bytes.len() as u64,
            &view.media_type,
            Some(staged),
            Some((&view, opts.sparse)),
        );
        self.ingests.remove(name.as_bytes())?;
        r?;
        Ok(StoredManifest {
            digest,
            view,
            outcome: PutOutcome::Written,
        })
    }

    /// Read and parse a stored manifest.
    pub fn manifest(&self, d: &Digest) -> Result<(Vec<u8>, ManifestView)> {
        let rec = self.record(d)?.ok_or_else(|| Error::NotFound(d.clone()))?;
        let bytes = self.read_small(d, MAX_MANIFEST_SIZE as u64)?;
        let view = ManifestView::parse(&bytes, Some(&rec.media_type)).map_err(|source| {
            Error::Manifest {
                digest: d.clone(),
                source,
            }
        })?;
        Ok((bytes, view))
    }

    /// Recorded outgoing edges of a manifest.
    pub fn edges(&self, parent: &Digest) -> Result<Vec<Edge>> {
        let prefix = parent.to_key();
        let mut out = Vec::new();
        for item in self.edges.scan_prefix(&prefix) {
            let (k, v) = item?;
            let e: EdgeRecord = record::decode("edges", &v)?;
            if let Some((child, _)) = Digest::from_key(&k[prefix.len()..]) {
                out.push(Edge {
                    child,
                    required: e.required,
                    role: role_of(e.role),
                });
            }
        }
        Ok(out)
    }

    /// Manifests whose `subject` is `subject`.
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Digest>> {
        let prefix = subject.to_key();
        let mut out = Vec::new();
        for item in self.referrers.scan_prefix(&prefix) {
            let (k, _) = item?;
            if let Some((d, _)) = Digest::from_key(&k[prefix.len()..]) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Every digest reachable from `root` through recorded edges (root first), with the
    /// required children that are absent as (parent, child) pairs. A graph nesting manifests
    /// deeper than [`MAX_DEPTH`](sealift_oci::manifest::MAX_DEPTH) is [`Error::TooDeep`], so
    /// `set_tag` never names one.
    pub fn walk(&self, root: &Digest) -> Result<Graph> {
        let mut nodes = Vec::new();
        let mut missing = Vec::new();
        // Every node's record is wanted here (linking stamps each one), so no leaves.
        self.walk_sized(root, false, &mut |node| {
            match node {
                Visit::Record { key, value } => {
                    nodes.push((key_digest(key)?, record::decode("blobs", value)?));
                }
                // No leaf comes without `leaves`; were one to, taking it as missing makes
                // linking refuse rather than leave a node unstamped.
                Visit::Missing { parent, child }
                | Visit::Leaf {
                    key: child, parent, ..
                } => {
                    missing.push((key_digest(parent)?, key_digest(child)?));
                }
            }
            Ok(())
        })?;
        Ok((nodes, missing))
    }

    /// Every node reachable from `root` through recorded edges (root first), each once, and
    /// the required children without a record. A config or layer behind a required edge
    /// that recorded its size is not looked up: such an edge is recorded only when its
    /// child was there, and GC keeps the child as long as the manifest. Its record is so
    /// not read again (a third of `images`' time at 10k tags went to those lookups); the
    /// caller checks what it needs and falls back to the record where that disagrees.
    /// Without `leaves`, every node present comes with its record (no [`Visit::Leaf`]).
    pub(crate) fn walk_sized(
        &self,
        root: &Digest,
        leaves: bool,
        visit: &mut SizedVisitor<'_>,
    ) -> Result<()> {
        // One read transaction for the whole walk: a consistent graph, and no transaction
        // per node.
        let snap = self.db.snapshot()?;
        let mut seen = std::collections::HashSet::new();
        // (key, manifests on the path to it, the parent that named it and whether the edge
        // is required, the size that edge recorded when the child may be taken as a leaf).
        type Named = Option<(Vec<u8>, bool)>;
        let mut stack: Vec<(Vec<u8>, usize, Named, Option<u64>)> =
            vec![(root.to_key(), 1, None, None)];
        while let Some((k, depth, parent, leaf)) = stack.pop() {
            if !seen.insert(k.clone()) {
                continue;
            }
            if let (Some(size), Some((p, required))) = (leaf, &parent) {
                debug_assert!(*required);
                visit(Visit::Leaf {
                    key: &k,
                    size,
                    parent: p,
                })?;
                continue;
            }
            let Some(v) = snap.get(&self.blobs, &k)? else {
                match parent {
                    None => return Err(Error::NotFound(root.clone())),
                    Some((p, true)) => visit(Visit::Missing {
                        parent: &p,
                        child: &k,
                    })?,
                    Some((_, false)) => {}
                }
                continue;
            };
            let rec: BlobRecordRef<'_> = record::decode_ref("blobs", &v)?;
            if rec.manifest {
                if depth > sealift_oci::manifest::MAX_DEPTH {
                    return Err(Error::TooDeep {
                        root: root.clone(),
                        at: key_digest(&k)?,
                        depth,
                    });
                }
                let mut bad = None;
                snap.scan_prefix(&self.edges, &k, |ek, ev| match record::decode_edge(ev) {
                    Ok((e, size)) => {
                        let leaf = size
                            .filter(|_| leaves && e.required && role_of(e.role) != Role::Manifest);
                        let child = ek[k.len()..].to_vec();
                        stack.push((child, depth + 1, Some((k.clone(), e.required)), leaf));
                        true
                    }
                    Err(e) => {
                        bad = Some(e);
                        false
                    }
                })?;
                if let Some(e) = bad {
                    return Err(e);
                }
            }
            visit(Visit::Record { key: &k, value: &v })?;
        }
        Ok(())
    }

    /// Check completeness and stamp every node with the current epoch (gate held).
    pub(crate) fn link_graph(&self, digest: &Digest) -> Result<()> {
        let (nodes, missing) = self.walk(digest)?;
        if let Some((parent, child)) = missing.into_iter().next() {
            let (media_type, size) = self
                .manifest(&parent)
                .ok()
                .and_then(|(_, v)| {
                    v.children()
                        .into_iter()
                        .find(|c| c.descriptor.digest == child)
                        .map(|c| (c.descriptor.media_type.clone(), c.descriptor.size))
                })
                .unwrap_or_default();
            return Err(Error::MissingChild {
                parent,
                child,
                media_type,
                size,
            });
        }
        let epoch = self.epoch()?;
        for (d, _) in nodes {
            let key = d.to_key();
            self.blobs.transaction(|b| {
                if link_child(b, &key, epoch, None)?.is_none() {
                    return Err(abort(Error::NotFound(d.clone())));
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Whether a manifest is an index (by its recorded media type).
    pub fn is_index(&self, d: &Digest) -> Result<bool> {
        Ok(self.record(d)?.is_some_and(|r| {
            sealift_oci::media_type::kind(&r.media_type) == sealift_oci::media_type::Kind::Index
        }))
    }
}
