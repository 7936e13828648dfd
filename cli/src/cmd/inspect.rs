//! `sealift inspect REF`: the manifest graph as a tree (with referrers under their subject),
//! then for each image: config summary, DiffIDs, ChainIDs and image ID.

use std::io::Write;

use anyhow::{bail, Context as _, Result};
use sealift_oci::diffid::chain_ids;
use sealift_oci::media_type as mt;
use sealift_oci::{Digest, ManifestKind, Platform};
use sealift_store::Store;
use serde::Serialize;

use super::{config, Context, Status};
use crate::cli::InspectArgs;
use crate::output::{self, human_bytes, plural, short_digest, short_media_type};

// Entries and referrers of referrers of … are followed the store's graph depth limit deep
// at most; real chains are 2 or 3 long (image → SBOM → signature).
use sealift_oci::manifest::MAX_DEPTH;

/// What a node is to its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Role {
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

/// One node of the graph as shown.
#[derive(Debug, Serialize)]
struct Node {
    role: Role,
    digest: Digest,
    /// As the parent describes it (the store's record for the root and referrers).
    media_type: String,
    size: u64,
    /// Whether the store has it.
    present: bool,
    /// Whether the parent is broken without it.
    required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<String>,
    /// For attestations: the manifest described.
    #[serde(skip_serializing_if = "Option::is_none")]
    attestation_for: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    children: Vec<Node>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    referrers: Vec<Node>,
}

/// The config summary of one image.
#[derive(Debug, Serialize)]
struct ConfigSummary {
    os: String,
    architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
    created: Option<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    env_count: usize,
}

/// One image (a manifest with an image config) under the reference.
#[derive(Debug, Serialize)]
struct ImageInfo {
    manifest: Digest,
    media_type: String,
    /// From the index entry, else from the config.
    platform: Option<String>,
    /// The config digest.
    image_id: Digest,
    /// `None` when the config is not in the store.
    config: Option<ConfigSummary>,
    layers: usize,
    diff_ids: Vec<Digest>,
    chain_ids: Vec<Digest>,
}

#[derive(Debug, Serialize)]
struct InspectDoc {
    reference: String,
    digest: Digest,
    media_type: String,
    /// Bytes of every node of the graph that is present (referrers not included).
    size: u64,
    /// The root manifest as stored (null when the reference names a plain blob).
    manifest: Option<serde_json::Value>,
    graph: Node,
    images: Vec<ImageInfo>,
}

/// How the tree is built.
struct Walker<'a> {
    store: &'a Store,
    platform: Option<&'a Platform>,
    images: Vec<ImageInfo>,
}

pub fn run(ctx: &Context, args: &InspectArgs, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let reference = args.reference.to_string();
    let digest = store
        .resolve(&args.reference)
        .with_context(|| format!("resolving {reference}"))?;
    let doc = inspect(&store, &reference, &digest, args.platform.as_ref())
        .with_context(|| format!("inspecting {reference}"))?;
    if ctx.json {
        output::json(out, &doc)?;
    } else {
        write_text(out, &doc)?;
    }
    Ok(Status::Success)
}

fn inspect(
    store: &Store,
    reference: &str,
    digest: &Digest,
    platform: Option<&Platform>,
) -> Result<InspectDoc> {
    let rec = store
        .record(digest)?
        .with_context(|| format!("{digest} is not in the store"))?;
    let (nodes, _) = store.walk(digest)?;
    let manifest = if rec.manifest {
        let (bytes, _) = store.manifest(digest)?;
        Some(serde_json::from_slice(&bytes).with_context(|| format!("parsing {digest}"))?)
    } else {
        None
    };
    let mut w = Walker {
        store,
        platform,
        images: Vec::new(),
    };
    let root = Node {
        role: Role::Root,
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
    let graph = w.expand(root, None, true, &mut Vec::new())?;
    if let Some(p) = platform {
        if w.images.is_empty() {
            let available = config::platforms(store, digest).unwrap_or_default();
            if available.is_empty() {
                bail!("{reference} has no image for {p}");
            }
            bail!(
                "{reference} has no image for {p} (it has {})",
                available.join(", ")
            );
        }
    }
    Ok(InspectDoc {
        reference: reference.to_string(),
        digest: digest.clone(),
        media_type: rec.media_type,
        size: nodes.iter().map(|(_, r)| r.size).sum(),
        manifest,
        graph,
        images: w.images,
    })
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
        let required: std::collections::HashMap<Digest, bool> = self
            .store
            .edges(&node.digest)?
            .into_iter()
            .map(|e| (e.child, e.required))
            .collect();
        match view.kind {
            ManifestKind::Index => {
                let selected: Vec<&sealift_oci::Descriptor> = view
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
                    let child = Node {
                        role: if attests.is_some() {
                            Role::Attestation
                        } else {
                            Role::Manifest
                        },
                        digest: d.digest.clone(),
                        media_type: d.media_type.clone(),
                        size: d.size,
                        present: true,
                        required: required.get(&d.digest).copied().unwrap_or(true),
                        platform: d.platform.as_ref().map(Platform::to_string),
                        attestation_for: attests.clone(),
                        artifact_type: d.artifact_type.clone(),
                        children: Vec::new(),
                        referrers: Vec::new(),
                    };
                    let is_image = image && attests.is_none();
                    let child = self.expand(child, d.platform.as_ref(), is_image, ancestors)?;
                    node.children.push(child);
                }
            }
            ManifestKind::Image => {
                for c in view.children() {
                    let role = match c.role {
                        sealift_oci::manifest::Role::Config => Role::Config,
                        sealift_oci::manifest::Role::Manifest => Role::Manifest,
                        sealift_oci::manifest::Role::Layer => Role::Layer,
                    };
                    let present = self.store.record(&c.descriptor.digest)?.is_some();
                    node.children.push(Node {
                        role,
                        digest: c.descriptor.digest.clone(),
                        media_type: c.descriptor.media_type.clone(),
                        size: c.descriptor.size,
                        present,
                        required: required
                            .get(&c.descriptor.digest)
                            .copied()
                            .unwrap_or(c.required),
                        platform: None,
                        attestation_for: None,
                        artifact_type: None,
                        children: Vec::new(),
                        referrers: Vec::new(),
                    });
                }
                if image {
                    if let Some(info) = self.image_info(&node, &view, entry_platform)? {
                        self.images.push(info);
                    }
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
                role: Role::Referrer,
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

    /// Config summary, DiffIDs and ChainIDs of an image manifest; `None` for artifacts and
    /// for images that `--platform` does not select.
    fn image_info(
        &self,
        node: &Node,
        view: &sealift_oci::ManifestView,
        entry_platform: Option<&Platform>,
    ) -> Result<Option<ImageInfo>> {
        let Some(cfg_desc) = view.config.as_ref().filter(|c| config::is_image_config(c)) else {
            return Ok(None);
        };
        let cfg = if self.store.record(&cfg_desc.digest)?.is_some() {
            Some(config::read(self.store, &cfg_desc.digest)?)
        } else {
            None
        };
        let platform = entry_platform
            .cloned()
            .or_else(|| cfg.as_ref().map(config::ImageConfig::platform));
        if let Some(filter) = self.platform {
            if !platform.as_ref().is_some_and(|p| filter.selects(p)) {
                return Ok(None);
            }
        }
        let diff_ids = match &cfg {
            Some(c) => config::diff_ids(c, &cfg_desc.digest)?,
            None => Vec::new(),
        };
        Ok(Some(ImageInfo {
            manifest: node.digest.clone(),
            media_type: node.media_type.clone(),
            platform: platform.as_ref().map(Platform::to_string),
            image_id: cfg_desc.digest.clone(),
            config: cfg.map(|c| {
                let run = c.config.clone().unwrap_or_default();
                ConfigSummary {
                    os: c.os,
                    architecture: c.architecture,
                    variant: c.variant,
                    created: c.created,
                    entrypoint: run.entrypoint,
                    cmd: run.cmd,
                    env_count: run.env.map_or(0, |e| e.len()),
                }
            }),
            layers: view.layers.len(),
            chain_ids: chain_ids(&diff_ids),
            diff_ids,
        }))
    }
}

fn write_text(out: &mut dyn Write, doc: &InspectDoc) -> std::io::Result<()> {
    writeln!(out, "Reference:   {}", doc.reference)?;
    writeln!(out, "Digest:      {}", doc.digest)?;
    writeln!(
        out,
        "Media type:  {} ({})",
        doc.media_type,
        short_media_type(&doc.media_type)
    )?;
    writeln!(out, "Size:        {}", human_bytes(doc.size))?;
    writeln!(out)?;
    write_tree(out, &doc.graph, "", "")?;
    for img in &doc.images {
        writeln!(out)?;
        match &img.platform {
            Some(p) => writeln!(out, "Image {p}")?,
            None => writeln!(out, "Image")?,
        }
        writeln!(out, "  Manifest:    {}", img.manifest)?;
        writeln!(out, "  Image ID:    {}", img.image_id)?;
        match &img.config {
            None => writeln!(out, "  Config:      not in the store")?,
            Some(c) => {
                let mut os_arch = format!("{}/{}", c.os, c.architecture);
                if let Some(v) = &c.variant {
                    os_arch.push('/');
                    os_arch.push_str(v);
                }
                writeln!(out, "  OS/Arch:     {os_arch}")?;
                writeln!(
                    out,
                    "  Created:     {}",
                    c.created.as_deref().unwrap_or("-")
                )?;
                writeln!(out, "  Entrypoint:  {}", command(&c.entrypoint))?;
                writeln!(out, "  Cmd:         {}", command(&c.cmd))?;
                writeln!(
                    out,
                    "  Env:         {}",
                    plural(c.env_count, "variable", "variables")
                )?;
            }
        }
        writeln!(out, "  Layers:      {}", img.layers)?;
        writeln!(out, "  DiffIDs:")?;
        for d in &img.diff_ids {
            writeln!(out, "    {d}")?;
        }
        writeln!(out, "  ChainIDs:")?;
        for d in &img.chain_ids {
            writeln!(out, "    {d}")?;
        }
    }
    Ok(())
}

/// An exec-form command as JSON (`["/bin/sh","-c","echo hi"]`), which keeps word boundaries.
fn command(c: &Option<Vec<String>>) -> String {
    match c {
        Some(v) if !v.is_empty() => serde_json::to_string(v).unwrap_or_default(),
        _ => "-".to_string(),
    }
}

/// One line per node: `label digest  media type  size  notes`, children drawn with
/// box-drawing connectors, referrers after children.
fn write_tree(out: &mut dyn Write, node: &Node, lead: &str, rest: &str) -> std::io::Result<()> {
    let label = match node.role {
        Role::Root => String::new(),
        Role::Manifest => match &node.platform {
            Some(p) => format!("manifest {p}: "),
            None => "manifest: ".to_string(),
        },
        Role::Attestation => match &node.attestation_for {
            Some(d) => format!("attestation for {}: ", short_digest(d)),
            None => "attestation: ".to_string(),
        },
        Role::Config => "config: ".to_string(),
        Role::Layer => "layer: ".to_string(),
        Role::Referrer => match &node.artifact_type {
            Some(a) => format!("referrer {a}: "),
            None => "referrer: ".to_string(),
        },
    };
    let mut notes = String::new();
    if !node.present {
        if node.required {
            notes.push_str("  (missing)");
        } else if mt::is_non_distributable(&node.media_type) {
            notes.push_str("  (not in the store: non-distributable)");
        } else {
            notes.push_str("  (not in the store)");
        }
    }
    writeln!(
        out,
        "{lead}{label}{}  {}  {}{notes}",
        node.digest,
        short_media_type(&node.media_type),
        human_bytes(node.size)
    )?;
    let all: Vec<&Node> = node.children.iter().chain(&node.referrers).collect();
    for (i, c) in all.iter().enumerate() {
        let last = i + 1 == all.len();
        let (l, r) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        write_tree(out, c, &format!("{rest}{l}"), &format!("{rest}{r}"))?;
    }
    Ok(())
}
