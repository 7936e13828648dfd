//! `sealift inspect REF`: the manifest graph as a tree (with referrers under their subject),
//! then for each image: config summary, DiffIDs, ChainIDs and image ID.

use std::io::Write;

use anyhow::{bail, Context as _, Result};
use sealift_oci::diffid::chain_ids;
use sealift_oci::media_type as mt;
use sealift_oci::{Digest, Platform};
use sealift_store::image::{ImageRef, Node, NodeRole};
use sealift_store::Store;
use serde::Serialize;

use super::config;
use crate::cli::InspectArgs;
use crate::context::{Context, Status};
use crate::output::{self, human_bytes, plural, short_digest, short_media_type};

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
    /// The signature policy's verdict when the image was admitted with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<sealift_trust::Verdict>,
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
    let tree = store.image_tree(digest, platform)?;
    let mut images = Vec::new();
    for img in &tree.images {
        if let Some(info) = image_info(store, img, platform)? {
            images.push(info);
        }
    }
    if let Some(p) = platform {
        if images.is_empty() {
            let available = store.platforms(digest).unwrap_or_default();
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
        graph: tree.root,
        images,
        signature: super::images::verdict(store, digest)?,
    })
}

/// Config summary, DiffIDs and ChainIDs of one of the reference's images; `None` for an
/// image that `--platform` does not select (by its entry's platform, else its config's).
fn image_info(
    store: &Store,
    img: &ImageRef,
    filter: Option<&Platform>,
) -> Result<Option<ImageInfo>> {
    let cfg_desc = &img.config;
    let cfg = if store.record(&cfg_desc.digest)?.is_some() {
        Some(config::read(store, &cfg_desc.digest)?)
    } else {
        None
    };
    let platform = img
        .entry_platform
        .clone()
        .or_else(|| cfg.as_ref().map(config::ImageConfig::platform));
    if let Some(filter) = filter {
        if !platform.as_ref().is_some_and(|p| filter.selects(p)) {
            return Ok(None);
        }
    }
    let diff_ids = match &cfg {
        Some(c) => config::diff_ids(c, &cfg_desc.digest)?,
        None => Vec::new(),
    };
    Ok(Some(ImageInfo {
        manifest: img.manifest.clone(),
        media_type: img.media_type.clone(),
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
        layers: img.layers,
        chain_ids: chain_ids(&diff_ids),
        diff_ids,
    }))
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
    if let Some(v) = &doc.signature {
        writeln!(out, "Signature:   {} by {}", v.kind, v.signer)?;
        writeln!(out, "             found at {}", v.signature)?;
        if let Some(t) = v.signed_at {
            writeln!(out, "             signed (logged) at unix {t}")?;
        }
        writeln!(out, "             checked at unix {}", v.checked_at)?;
    }
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
        NodeRole::Root => String::new(),
        NodeRole::Manifest => match &node.platform {
            Some(p) => format!("manifest {p}: "),
            None => "manifest: ".to_string(),
        },
        NodeRole::Attestation => match &node.attestation_for {
            Some(d) => format!("attestation for {}: ", short_digest(d)),
            None => "attestation: ".to_string(),
        },
        NodeRole::Config => "config: ".to_string(),
        NodeRole::Layer => "layer: ".to_string(),
        NodeRole::Referrer => match &node.artifact_type {
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
