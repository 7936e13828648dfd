//! What a reference holds, as `images` and `inspect` show it: the graph's size and what is
//! missing ([`Store::image_summary`]), and the tree of a manifest with its index entries,
//! config and layers, and referrers under their subject, plus the images found on the way
//! ([`Store::image_tree`]). Image configs are not parsed here: each [`ImageRef`] names its
//! config, and the caller reads it with the shared config parser.

use std::collections::HashMap;

use serde::Serialize;

use crate::backend::Location;
use crate::error::Result;
use crate::graph::{key_digest, Visit};
use crate::record::{self, BlobRecordRef};
use crate::store::Store;
use sealift_oci::manifest::{ManifestKind, ManifestView, MAX_DEPTH};
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, Platform};

/// A (parent, child) edge whose required child is absent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MissingEdge {
    /// The manifest that needs it.
    pub parent: Digest,
    /// The absent child.
    pub child: Digest,
}

/// The graph under one digest, as a listing shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSummary {
    /// The media type the store recorded for the root.
    pub media_type: String,
    /// Whether the root is a manifest (else a plain blob).
    pub manifest: bool,
    /// Sum of the sizes of every node of the graph that is present.
    pub size: u64,
    /// Required edges whose child is absent.
    pub missing: Vec<MissingEdge>,
    /// Nodes recorded in the store whose file is missing or of the wrong size (what
    /// `verify` reports as a missing file; found with a stat, not a hash).
    pub missing_files: Vec<Digest>,
}

impl ImageSummary {
    /// Whether every required node and every node's file is there.
    pub fn complete(&self) -> bool {
        self.missing.is_empty() && self.missing_files.is_empty()
    }
}

/// What a node is to its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// What the reference names.
    Root,
    /// An index entry.
    Manifest,
    /// A buildx attestation manifest (an index entry describing another entry).
    Attestation,
    /// An image config.
    Config,
    /// A layer, or an artifact's blob.
    Layer,
    /// A manifest whose `subject` is the parent.
    Referrer,
}

/// One node of a reference's tree.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// What it is to its parent.
    pub role: NodeRole,
    /// Its digest.
    pub digest: Digest,
    /// As the parent describes it (the store's record for the root and referrers).
    pub media_type: String,
    /// Its size.
    pub size: u64,
    /// Whether the store has it.
    pub present: bool,
    /// Whether the parent is broken without it.
    pub required: bool,
    /// For index entries: the platform the entry gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// For attestations: the manifest described.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation_for: Option<Digest>,
    /// For referrers and artifact entries: the artifact type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Index entries, or config and layers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
    /// Manifests whose subject this is, by digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrers: Vec<Node>,
}

impl Node {
    fn new(role: NodeRole, d: &Descriptor, required: bool) -> Node {
        Node {
            role,
            digest: d.digest.clone(),
            media_type: d.media_type.clone(),
            size: d.size,
            present: true,
            required,
            platform: None,
            attestation_for: None,
            artifact_type: None,
            children: Vec::new(),
            referrers: Vec::new(),
        }
    }
}

/// An image manifest (with an image config) of the reference: not an attestation, not a
/// referrer.
#[derive(Clone, Debug)]
pub struct ImageRef {
    /// The image manifest.
    pub manifest: Digest,
    /// Its media type, as its parent describes it.
    pub media_type: String,
    /// The platform its index entry gives, if any.
    pub entry_platform: Option<Platform>,
    /// Its config (an image config media type); it may be absent from the store.
    pub config: Descriptor,
    /// How many layers it lists.
    pub layers: usize,
}

/// What [`Store::image_tree`] finds.
#[derive(Clone, Debug)]
pub struct ImageTree {
    /// The tree, root first.
    pub root: Node,
    /// The images of the reference, in tree order.
    pub images: Vec<ImageRef>,
}

/// How [`Store::image_summary_with`] tells that a node's bytes are in place: a stat per
/// node, or one listing of every object made before the walks.
pub struct Presence {
    /// Per listed digest key, its size; `None`: stat each node.
    listed: Option<HashMap<Vec<u8>, u64>>,
}

/// Graphs (or, for verify, records) from which a listing of an object store beats a stat per
/// node: a graph is about ten nodes, so 256 graphs are some 2,800 HEAD requests, where a
/// listing costs one request per 1,000 objects.
const LIST_FROM: usize = 256;

impl Presence {
    /// A stat per node.
    pub fn stat() -> Presence {
        Presence { listed: None }
    }

    /// Whether the bytes under `key` are there with `size` (a backend that cannot answer
    /// counts as "not in place", as in [`Store::file_present`]).
    fn in_place(&self, store: &Store, key: &[u8], size: u64) -> Result<bool> {
        match &self.listed {
            Some(listed) => Ok(listed.get(key) == Some(&size)),
            None => Ok(store.bytes_in_place(&key_digest(key)?, size)),
        }
    }

    /// The size of `d`'s bytes, or `None` when they are not there.
    pub(crate) fn size(&self, store: &Store, d: &Digest) -> Result<Option<u64>> {
        match &self.listed {
            Some(listed) => Ok(listed.get(&d.to_key()).copied()),
            None => store.backend.stat(d),
        }
    }
}

impl Store {
    /// The presence check for summarising `roots` graphs. On an object store, from
    /// [`LIST_FROM`] graphs on, one listing of the bucket (its sizes included) instead of a
    /// HEAD request per node: `images` over 10k tags would otherwise send about 110k. Local
    /// files keep a stat per node: a directory listing gives no sizes, and a stat is cheap.
    pub fn presence_for(&self, roots: usize) -> Result<Presence> {
        if roots < LIST_FROM || matches!(self.backend.location(), Location::Local) {
            return Ok(Presence::stat());
        }
        let mut listed = HashMap::new();
        self.backend.list(&mut |item| {
            if let (Some(d), Some(size)) = (item.digest, item.size) {
                listed.insert(d.to_key(), size);
            }
            Ok(true)
        })?;
        Ok(Presence {
            listed: Some(listed),
        })
    }

    /// Size, missing children and missing files of the graph under `digest`; `None` when
    /// the store has no record of it (a tag whose target is gone: `verify` reports it).
    pub fn image_summary(&self, digest: &Digest) -> Result<Option<ImageSummary>> {
        self.image_summary_with(digest, &Presence::stat())
    }

    /// [`Store::image_summary`], checking bytes with `presence` (from
    /// [`Store::presence_for`], made once for a listing of many graphs).
    pub fn image_summary_with(
        &self,
        digest: &Digest,
        presence: &Presence,
    ) -> Result<Option<ImageSummary>> {
        let Some(v) = self.blobs.get(digest.to_key())? else {
            return Ok(None);
        };
        let root: BlobRecordRef<'_> = record::decode_ref("blobs", &v)?;
        let mut size = 0;
        let mut missing_files = Vec::new();
        let mut missing = Vec::new();
        // Records are read without copying them; a digest is made only for what is
        // reported or stat'ed.
        self.walk_sized(digest, true, &mut |node| {
            let fetched;
            let (key, value) = match node {
                Visit::Record { key, value } => (key, value),
                Visit::Leaf { key, size: s, .. } if presence.in_place(self, key, s)? => {
                    size += s;
                    return Ok(());
                }
                // Bytes absent or of another size than the edge says: the record decides
                // between a missing file and a missing child, as for any other node.
                Visit::Leaf { key, parent, .. } => {
                    fetched = self.blobs.get(key)?;
                    match &fetched {
                        Some(v) => (key, &v[..]),
                        None => return missing_edge(&mut missing, parent, key),
                    }
                }
                Visit::Missing { parent, child } => {
                    return missing_edge(&mut missing, parent, child)
                }
            };
            let rec: BlobRecordRef<'_> = record::decode_ref("blobs", value)?;
            size += rec.size;
            if !presence.in_place(self, key, rec.size)? {
                missing_files.push(key_digest(key)?);
            }
            Ok(())
        })?;
        Ok(Some(ImageSummary {
            media_type: root.media_type.to_string(),
            manifest: root.manifest,
            size,
            missing_files,
            missing,
        }))
    }

    /// The tree under `digest` (which must be in the store): index entries (only those
    /// `platform` selects, with the attestations describing them, and entries without a
    /// platform), config and layers, and referrers under their subject, followed at most
    /// [`MAX_DEPTH`] manifests deep. Real referrer chains are 2 or 3 long (image → SBOM →
    /// signature).
    pub fn image_tree(&self, digest: &Digest, platform: Option<&Platform>) -> Result<ImageTree> {
        let rec = self
            .record(digest)?
            .ok_or_else(|| crate::Error::NotFound(digest.clone()))?;
        let mut w = Walker {
            store: self,
            platform,
            images: Vec::new(),
        };
        let root = Node {
            role: NodeRole::Root,
            digest: digest.clone(),
            media_type: rec.media_type.clone(),
            size: rec.size,
            present: true,
            required: true,
            platform: None,
            attestation_for: None,
            artifact_type: rec.artifact_type.clone().filter(|_| rec.subject.is_some()),
            children: Vec::new(),
            referrers: Vec::new(),
        };
        let root = w.expand(root, None, true, &mut Vec::new())?;
        Ok(ImageTree {
            root,
            images: w.images,
        })
    }
}

/// How the tree is built.
struct Walker<'a> {
    store: &'a Store,
    platform: Option<&'a Platform>,
    images: Vec<ImageRef>,
}

impl Walker<'_> {
    /// Fill in a node's children and referrers. `entry_platform` is the platform its index
    /// entry gives; `image` says whether an image manifest here is one of the reference's
    /// images (not an attestation or a referrer).
    fn expand(
        &mut self,
        mut node: Node,
        entry_platform: Option<&Platform>,
        image: bool,
        ancestors: &mut Vec<Digest>,
    ) -> Result<Node> {
        let Some(rec) = self.store.record(&node.digest)? else {
            node.present = false;
            return Ok(node);
        };
        if !rec.manifest || ancestors.len() >= MAX_DEPTH || ancestors.contains(&node.digest) {
            return Ok(node);
        }
        ancestors.push(node.digest.clone());
        let (_, view) = self.store.manifest(&node.digest)?;
        // The recorded edge says whether a child is required: an entry left out of a sparse
        // (platform-filtered) copy is not.
        let required: HashMap<Digest, bool> = self
            .store
            .edges(&node.digest)?
            .into_iter()
            .map(|e| (e.child, e.required))
            .collect();
        match view.kind {
            ManifestKind::Index => self.entries(&mut node, &view, &required, image, ancestors)?,
            ManifestKind::Image => {
                for c in view.children() {
                    let role = match c.role {
                        sealift_oci::manifest::Role::Config => NodeRole::Config,
                        sealift_oci::manifest::Role::Manifest => NodeRole::Manifest,
                        sealift_oci::manifest::Role::Layer => NodeRole::Layer,
                    };
                    let d = &c.descriptor;
                    let mut child = Node::new(
                        role,
                        d,
                        required.get(&d.digest).copied().unwrap_or(c.required),
                    );
                    child.present = self.store.record(&d.digest)?.is_some();
                    node.children.push(child);
                }
                let config = view
                    .config
                    .as_ref()
                    .filter(|c| mt::kind(&c.media_type) == mt::Kind::Config);
                if let (true, Some(config)) = (image, config) {
                    self.images.push(ImageRef {
                        manifest: node.digest.clone(),
                        media_type: node.media_type.clone(),
                        entry_platform: entry_platform.cloned(),
                        config: config.clone(),
                        layers: view.layers.len(),
                    });
                }
            }
        }
        let mut referrers = self.store.referrers(&node.digest)?;
        referrers.sort();
        for r in referrers {
            let Some(rrec) = self.store.record(&r)? else {
                continue;
            };
            let child = Node {
                role: NodeRole::Referrer,
                digest: r,
                media_type: rrec.media_type,
                size: rrec.size,
                present: true,
                required: false,
                platform: None,
                attestation_for: None,
                artifact_type: rrec.artifact_type,
                children: Vec::new(),
                referrers: Vec::new(),
            };
            let child = self.expand(child, None, false, ancestors)?;
            node.referrers.push(child);
        }
        ancestors.pop();
        Ok(node)
    }

    /// An index's entries that the platform filter keeps, each expanded.
    fn entries(
        &mut self,
        node: &mut Node,
        view: &ManifestView,
        required: &HashMap<Digest, bool>,
        image: bool,
        ancestors: &mut Vec<Digest>,
    ) -> Result<()> {
        let selected: Vec<&Descriptor> = view
            .manifests
            .iter()
            .filter(|d| d.attests().is_none())
            .filter(|d| match (self.platform, &d.platform) {
                (None, _) => true,
                (Some(f), Some(p)) => f.selects(p),
                // An entry without a platform (a nested index) is searched too.
                (Some(_), None) => true,
            })
            .collect();
        for d in &view.manifests {
            let attests = d.attests();
            let keep = match &attests {
                None => selected.iter().any(|s| std::ptr::eq(*s, d)),
                // Attestations follow the platform they describe.
                Some(subject) => selected.iter().any(|s| &s.digest == subject),
            };
            if !keep {
                continue;
            }
            let role = if attests.is_some() {
                NodeRole::Attestation
            } else {
                NodeRole::Manifest
            };
            let mut child = Node::new(role, d, required.get(&d.digest).copied().unwrap_or(true));
            child.platform = d.platform.as_ref().map(Platform::to_string);
            child.attestation_for = attests.clone();
            child.artifact_type = d.artifact_type.clone();
            let is_image = image && attests.is_none();
            let child = self.expand(child, d.platform.as_ref(), is_image, ancestors)?;
            node.children.push(child);
        }
        Ok(())
    }
}

/// Report the required edge `parent` → `child` whose child has no record.
fn missing_edge(missing: &mut Vec<MissingEdge>, parent: &[u8], child: &[u8]) -> Result<()> {
    missing.push(MissingEdge {
        parent: key_digest(parent)?,
        child: key_digest(child)?,
    });
    Ok(())
}
