//! `sealift gc [--dry-run] [--grace DURATION]`: collect what nothing reaches.

use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_store::gc::{GcOptions, GcReport};
use serde::Serialize;

use crate::cli::GcArgs;
use crate::context::{Context, Status};
use crate::output::{self, human_bytes, plural, short_media_type, Table};

#[derive(Serialize)]
struct GcDoc<'a> {
    grace_seconds: u64,
    #[serde(flatten)]
    report: &'a GcReport,
}

pub fn run(ctx: &Context, args: &GcArgs, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let opts = GcOptions {
        dry_run: args.dry_run,
        grace: args.grace.0,
    };
    let spinner = ctx.progress.spinner(if args.dry_run {
        "finding garbage"
    } else {
        "collecting garbage"
    });
    let report = store.gc(&opts);
    spinner.finish_and_clear();
    let report =
        report.with_context(|| format!("collecting garbage in {}", store.root().display()))?;

    if ctx.json {
        output::json(
            out,
            &GcDoc {
                grace_seconds: args.grace.0.as_secs(),
                report: &report,
            },
        )?;
        return Ok(Status::Success);
    }
    if args.dry_run && !report.removed.is_empty() && !ctx.quiet {
        let mut table = Table::new(&["DIGEST", "SIZE", "MEDIA TYPE"]);
        for c in &report.removed {
            table.row(vec![
                c.digest.to_string(),
                human_bytes(c.size),
                short_media_type(&c.media_type),
            ]);
        }
        table.write(out)?;
    }
    let items = plural(report.removed.len(), "item", "items");
    let bytes = human_bytes(report.bytes);
    if args.dry_run {
        writeln!(out, "Would remove {items}, {bytes}")?;
    } else {
        writeln!(out, "Removed {items}, {bytes}")?;
    }
    if ctx.quiet {
        return Ok(Status::Success);
    }
    writeln!(
        out,
        "Kept by the grace period ({}): {}",
        args.grace, report.kept_by_grace
    )?;
    if report.spared_by_writer > 0 {
        writeln!(
            out,
            "Spared (written to while collecting): {}",
            report.spared_by_writer
        )?;
    }
    let would = if args.dry_run { "to remove" } else { "removed" };
    if report.orphan_files > 0 {
        writeln!(out, "Orphan files {would}: {}", report.orphan_files)?;
    }
    if report.stale_ingests > 0 {
        writeln!(
            out,
            "Stale partial downloads {would}: {}",
            report.stale_ingests
        )?;
    }
    Ok(Status::Success)
}
