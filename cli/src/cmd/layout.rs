//! `sealift import PATH [--tag REPO:TAG] [--push REGISTRY]`,
//! `sealift export -o PATH SELECTOR... [--referrers] [--base INV] [--split SIZE] [--format]`
//! and `sealift inventory -o FILE`: OCI image layouts, bundles and Docker archives in and
//! out of the store.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use sealift_copy::copy::{copy, CopyOptions, CopyReport};
use sealift_copy::location::Location;
use sealift_copy::transport::{open_sink, open_source, OpenOptions};
use sealift_copy::Clients;
use sealift_layout::docker_archive::{export_docker_archive, DockerArchiveOptions};
use sealift_layout::{
    image_list, select, split, ExportOptions, ExportReport, ImportOptions, ImportReport, Inventory,
};
use sealift_oci::{Digest, StoreRef};
use sealift_registry::Credentials;
use sealift_store::Store;
use serde::Serialize;

use crate::cli::{ExportArgs, ExportFormat, ImportArgs, InventoryArgs, PushFlags};
use crate::context::{Context, Status};
use crate::output::{self, human_bytes, plural, short_digest, short_media_type};
use crate::progress::byte_callback;

pub fn inventory(ctx: &Context, args: &InventoryArgs, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let inv = Inventory::of_store(&store).context("reading the store")?;
    let id = inv
        .write(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    if ctx.json {
        output::json(
            out,
            &serde_json::json!({
                "path": args.output,
                "id": id,
                "digests": inv.digests.len(),
                "manifests": inv.manifests.len(),
            }),
        )?;
    } else if !ctx.quiet {
        writeln!(
            out,
            "Wrote {} ({} digests, {} manifests; id {id})",
            args.output.display(),
            inv.digests.len(),
            inv.manifests.len()
        )?;
    }
    Ok(Status::Success)
}

/// Where `--push DST` sends `repo:tag`: DST's host and path prefix, then the repository
/// without the registry host it was pulled from.
fn push_location(dst: &str, r: &str) -> Result<Location> {
    let base = dst
        .strip_prefix("docker://")
        .unwrap_or(dst)
        .trim_end_matches('/');
    if base.is_empty() || base.contains("://") {
        bail!("--push takes a registry: docker://HOST[/PREFIX]");
    }
    let first = r.split('/').next().unwrap_or_default();
    let has_host =
        r.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let path = if has_host { &r[first.len() + 1..] } else { r };
    format!("docker://{base}/{path}")
        .parse()
        .with_context(|| format!("--push {dst}: cannot name {r} there"))
}

/// Push every tagged image of an import, with its referrers, through the copy engine.
fn push_imported(
    ctx: &Context,
    store: Arc<Store>,
    report: &ImportReport,
    dst: &str,
    flags: &PushFlags,
) -> Result<Vec<CopyReport>> {
    let creds = flags
        .dest_creds
        .as_deref()
        .map(|c| {
            let (username, password) = c
                .split_once(':')
                .context("--dest-creds takes USER:PASSWORD")?;
            Ok::<_, anyhow::Error>(Credentials::Basic {
                username: username.into(),
                password: password.into(),
            })
        })
        .transpose()?;
    let open = OpenOptions {
        credentials: creds,
        tls_verify: flags.tls_verify,
        ca_file: None,
    };
    // One client pool for every push: one token cache and request limit per registry.
    let clients = Clients::from_options(&open);
    let mut jobs = Vec::new();
    for img in &report.images {
        if let Some(r) = &img.reference {
            jobs.push((r.parse::<StoreRef>()?, push_location(dst, r)?));
        }
    }
    let rt = crate::runtime::build(crate::runtime::Workers::Transfer)?;
    let mut reports = Vec::new();
    for (src, dst) in jobs {
        let bar = ctx.progress.bytes(format!("pushing {src} to {dst}"));
        let opts = CopyOptions {
            referrers: true,
            progress: Some(byte_callback(&bar)),
            ..Default::default()
        };
        let result = rt.block_on(async {
            let source = open_source(&Location::Store(src.clone()), Some(&store), &clients)?;
            let sink = open_sink(&dst, Some(&store), &clients)?;
            copy(source, sink, &opts).await
        });
        bar.finish_and_clear();
        reports.push(result.with_context(|| format!("pushing {src} to {dst}"))?);
    }
    Ok(reports)
}

#[derive(Serialize)]
struct ImportDoc<'a> {
    #[serde(flatten)]
    import: &'a ImportReport,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pushed: Vec<CopyReport>,
}

pub fn import(ctx: &Context, args: &ImportArgs, out: &mut dyn Write) -> Result<Status> {
    if let Some(dst) = &args.push {
        // Check the destination before importing anything.
        push_location(dst, "x:y")?;
    }
    // The policy's keys and trusted root are read before the store is touched.
    let verify = super::copy::policy_opts(&args.verify)?;
    let store = ctx.open_store()?;
    let path = args.path.display().to_string();
    let bar = ctx.progress.bytes(format!("importing {path}"));
    let opts = ImportOptions {
        tag: args.tag.clone().map(StoreRef::from),
        progress: Some(byte_callback(&bar)),
        verify,
    };
    let report = sealift_layout::import_path(&store, &args.path, &opts);
    bar.finish_and_clear();
    let report = report.with_context(|| format!("importing {path}"))?;
    for w in &report.warnings {
        tracing::warn!("{path}: {w}");
    }
    // Refused images are errors of their own; the rest of the bundle is imported.
    for r in &report.refused {
        eprintln!(
            "error: {path}: {} refused, not tagged: {}",
            r.image, r.reason
        );
    }
    if !ctx.json {
        write_import(ctx, out, &report)?;
        out.flush()?;
    }
    let pushed = match &args.push {
        Some(dst) => push_imported(ctx, store, &report, dst, &args.push_flags)?,
        None => Vec::new(),
    };
    if ctx.json {
        output::json(
            out,
            &ImportDoc {
                import: &report,
                pushed,
            },
        )?;
    } else if !ctx.quiet {
        for p in &pushed {
            let d = p.destination_digest.as_ref().map(|d| d.to_string());
            writeln!(
                out,
                "Pushed {} -> {} ({}, {} moved)",
                p.source,
                p.destination,
                d.unwrap_or_default(),
                human_bytes(p.bytes_moved)
            )?;
        }
    }
    Ok(if report.refused.is_empty() {
        Status::Success
    } else {
        Status::Problems
    })
}

fn write_import(ctx: &Context, out: &mut dyn Write, report: &ImportReport) -> Result<()> {
    if ctx.quiet {
        return Ok(());
    }
    for img in &report.images {
        let kind = short_media_type(&img.media_type);
        match &img.reference {
            Some(r) => writeln!(out, "Imported {r} ({}, {kind})", img.digest)?,
            None => writeln!(out, "Imported {} ({kind}, untagged)", img.digest)?,
        }
        if let Some(v) = &img.verdict {
            writeln!(out, "  signed: {} by {}", v.kind, v.signer)?;
        }
    }
    writeln!(
        out,
        "{} written ({}), {} already present",
        plural(report.blobs_written, "blob", "blobs"),
        human_bytes(report.bytes_written),
        report.blobs_present
    )?;
    Ok(())
}

pub fn export(ctx: &Context, args: &ExportArgs, out: &mut dyn Write) -> Result<Status> {
    let flags = &args.bundle;
    let docker = flags.format == ExportFormat::DockerArchive;
    if docker && (flags.base.is_some() || flags.split.is_some() || args.referrers) {
        bail!(
            "--format docker-archive writes one plain archive: no --base, --split or --referrers"
        );
    }
    if !docker && flags.platform.is_some() {
        bail!("--platform goes with --format docker-archive (an OCI bundle keeps every platform)");
    }
    let base = flags
        .base
        .as_ref()
        .map(|p| Inventory::read(p).with_context(|| format!("reading --base {}", p.display())))
        .transpose()?;
    let store = ctx.open_store()?;
    let path = args.output.display().to_string();
    let mut chosen = args.references.clone();
    if !args.images_from.is_empty() {
        let listed = image_list::read_lists(&args.images_from)?;
        chosen.extend(image_list::selectors(&store, &listed)?);
    }
    let selectors: Vec<String> = chosen.iter().map(ToString::to_string).collect();
    let refs = select::resolve(&store, &chosen)
        .with_context(|| format!("selecting {}", selectors.join(", ")))?;
    let bar = ctx.progress.bytes(format!("exporting to {path}"));
    let report = if docker {
        let opts = DockerArchiveOptions {
            platform: flags.platform.clone(),
            progress: Some(byte_callback(&bar)),
        };
        export_docker_archive(&store, &refs, &args.output, &opts)
    } else {
        let opts = ExportOptions {
            referrers: args.referrers,
            progress: Some(byte_callback(&bar)),
            base,
            split: flags.split,
        };
        sealift_layout::export(&store, &refs, &args.output, &opts)
    };
    bar.finish_and_clear();
    let report = report.with_context(|| format!("exporting {} to {path}", selectors.join(", ")))?;
    if ctx.json {
        output::json(out, &ExportDoc::from(&report))?;
        return Ok(Status::Success);
    }
    write_export(ctx, out, &report, &path)?;
    Ok(Status::Success)
}

/// The export report with images as objects rather than pairs.
#[derive(Serialize)]
struct ExportDoc<'a> {
    images: Vec<ExportedImage<'a>>,
    blobs: usize,
    bytes: u64,
    linked: usize,
    copied: usize,
    present: usize,
    omitted: usize,
    omitted_bytes: u64,
    parts: &'a [PathBuf],
}

#[derive(Serialize)]
struct ExportedImage<'a> {
    reference: &'a str,
    digest: &'a Digest,
}

impl<'a> From<&'a ExportReport> for ExportDoc<'a> {
    fn from(r: &'a ExportReport) -> Self {
        ExportDoc {
            images: r
                .images
                .iter()
                .map(|(reference, digest)| ExportedImage { reference, digest })
                .collect(),
            blobs: r.blobs,
            bytes: r.bytes,
            linked: r.linked,
            copied: r.copied,
            present: r.present,
            omitted: r.omitted,
            omitted_bytes: r.omitted_bytes,
            parts: &r.parts,
        }
    }
}

fn write_export(
    ctx: &Context,
    out: &mut dyn Write,
    report: &ExportReport,
    path: &str,
) -> Result<()> {
    if ctx.quiet {
        return Ok(());
    }
    for (name, digest) in &report.images {
        writeln!(out, "Exported {name} ({})", short_digest(digest))?;
    }
    let mut line = format!(
        "{}, {} in {path}",
        plural(report.blobs, "blob", "blobs"),
        human_bytes(report.bytes)
    );
    if report.linked + report.copied + report.present > 0 {
        line.push_str(&format!(
            " ({} linked, {} copied, {} already there)",
            report.linked, report.copied, report.present
        ));
    }
    if report.omitted > 0 {
        line.push_str(&format!(
            "; {} ({}) left out: the site has them",
            plural(report.omitted, "blob", "blobs"),
            human_bytes(report.omitted_bytes)
        ));
    }
    writeln!(out, "{line}")?;
    if !report.parts.is_empty() {
        writeln!(
            out,
            "{} ({} first), checksums in {}",
            plural(report.parts.len(), "part", "parts"),
            report.parts[0].display(),
            split::checksum_path(std::path::Path::new(path)).display()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::push_location;

    #[test]
    fn push_locations_drop_the_source_registry() {
        let at = |dst: &str, r: &str| push_location(dst, r).unwrap().to_string();
        let direct: sealift_copy::location::Location =
            "docker://reg.site:5000/mirror/apps/web:1".parse().unwrap();
        assert_eq!(
            at("docker://reg.site:5000/mirror", "apps/web:1"),
            direct.to_string()
        );
        assert_eq!(
            at("reg.site:5000/", "registry.local:5000/apps/web:1"),
            at("reg.site:5000", "apps/web:1")
        );
        assert_eq!(
            at("reg.site:5000", "localhost/web:1"),
            at("reg.site:5000", "web:1")
        );
        assert!(push_location("ftp://x/y", "a:b").is_err());
        assert!(push_location("", "a:b").is_err());
    }
}
