//! `sealift migrate --blobs LOCATION`: move the store's blob bytes to another backend
//! (local files ↔ an S3-compatible bucket), verified, resumable, metadata switched last.

use std::io::Write;

use anyhow::{bail, Context as _, Result};
use sealift_store::{Location, Store};

use crate::cli::MigrateArgs;
use crate::context::{Context, Status};
use crate::output::{self, human_bytes, plural};

pub fn run(ctx: &Context, args: &MigrateArgs, out: &mut dyn Write) -> Result<Status> {
    if ctx.shared_store().is_some() {
        bail!("migrate needs the store to itself; stop the sync daemon first");
    }
    let root = &ctx.store_path;
    let mut store =
        Store::open(root).with_context(|| format!("opening store {}", root.display()))?;
    let to: Location = args.blobs.clone();
    let dest = sealift_store::backend::open::connect(root, &to)
        .with_context(|| format!("opening {to}"))?;
    let bar = ctx.progress.bytes(format!("moving blobs to {to}"));
    let report = store.migrate(
        &to,
        dest,
        Some(&|_done, _total, bytes| bar.set_position(bytes)),
    );
    bar.finish_and_clear();
    let report = report.with_context(|| {
        format!(
            "moving the blobs of {} to {to} (run the same command again to resume)",
            root.display()
        )
    })?;
    if ctx.json {
        output::json(out, &report)?;
        return Ok(Status::Success);
    }
    if !ctx.quiet {
        writeln!(
            out,
            "Blobs of {} are at {} (were at {}): copied {} ({}), {} already there, removed {} old {}",
            root.display(),
            report.to,
            report.from,
            plural(report.copied, "blob", "blobs"),
            human_bytes(report.bytes),
            report.resumed,
            report.removed,
            if report.removed == 1 { "copy" } else { "copies" },
        )?;
    }
    Ok(Status::Success)
}
