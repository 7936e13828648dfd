//! `sealift import PATH [--tag REPO:TAG]` and `sealift export -o PATH REF... [--referrers]`:
//! OCI image layouts (directories and tarballs) in and out of the store.

use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_store::{Digest, StoreRef};
use sealift_sync::layout::{self, ExportOptions, ExportReport, ImportOptions, ImportReport};
use serde::Serialize;

use super::{Context, Status};
use crate::cli::{ExportArgs, ImportArgs};
use crate::output::{self, human_bytes, plural, short_digest, short_media_type};
use crate::progress::byte_callback;

pub fn import(ctx: &Context, args: &ImportArgs, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let path = args.path.display().to_string();
    let bar = ctx.progress.bytes(format!("importing {path}"));
    let opts = ImportOptions {
        tag: args.tag.clone().map(StoreRef::from),
        progress: Some(byte_callback(&bar)),
    };
    let report = layout::import_path(&store, &args.path, &opts);
    bar.finish_and_clear();
    let report = report.with_context(|| format!("importing {path}"))?;
    if ctx.json {
        output::json(out, &report)?;
        return Ok(Status::Success);
    }
    for w in &report.warnings {
        tracing::warn!("{path}: {w}");
    }
    write_import(ctx, out, &report)?;
    Ok(Status::Success)
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
    let store = ctx.open_store()?;
    let path = args.output.display().to_string();
    let bar = ctx.progress.bytes(format!("exporting to {path}"));
    let opts = ExportOptions {
        referrers: args.referrers,
        progress: Some(byte_callback(&bar)),
    };
    let report = layout::export(&store, &args.references, &args.output, &opts);
    bar.finish_and_clear();
    let report = report.with_context(|| {
        let refs: Vec<String> = args.references.iter().map(ToString::to_string).collect();
        format!("exporting {} to {path}", refs.join(", "))
    })?;
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
    writeln!(out, "{line}")?;
    Ok(())
}
