//! `sealift du`: what the images would take as separate copies (logical) against what the
//! store holds (physical), per repository, and the layers shared most.

use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_store::du::DuReport;
use serde::Serialize;

use crate::context::{Context, Status};
use crate::output::{self, human_bytes, short_media_type, Table};

/// How many shared layers to list.
const TOP_SHARED: usize = 10;

#[derive(Serialize)]
struct DuDoc<'a> {
    /// Logical minus physical (0 when the store holds more than its tags reach).
    saving: u64,
    #[serde(flatten)]
    report: &'a DuReport,
}

pub fn run(ctx: &Context, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let report = store
        .du(TOP_SHARED)
        .with_context(|| format!("measuring {}", store.root().display()))?;
    let saving = report.logical.saturating_sub(report.physical);
    if ctx.json {
        output::json(
            out,
            &DuDoc {
                saving,
                report: &report,
            },
        )?;
        return Ok(Status::Success);
    }
    writeln!(
        out,
        "Logical:   {}  (tagged images counted separately)",
        human_bytes(report.logical)
    )?;
    writeln!(
        out,
        "Physical:  {}  ({} blobs and manifests, each stored once)",
        human_bytes(report.physical),
        report.blobs
    )?;
    let pct = if report.logical > 0 {
        saving as f64 * 100.0 / report.logical as f64
    } else {
        0.0
    };
    writeln!(out, "Saving:    {}  ({pct:.0}%)", human_bytes(saving))?;
    if ctx.quiet {
        return Ok(Status::Success);
    }
    if !report.repos.is_empty() {
        writeln!(out)?;
        let mut t = Table::new(&["REPOSITORY", "TAGS", "LOGICAL", "PHYSICAL"]);
        for r in &report.repos {
            t.row(vec![
                r.repo.clone(),
                r.tags.to_string(),
                human_bytes(r.logical),
                human_bytes(r.physical),
            ]);
        }
        t.write(out)?;
    }
    if !report.shared.is_empty() {
        writeln!(out)?;
        let mut t = Table::new(&["SHARED BLOB", "SIZE", "IMAGES", "MEDIA TYPE"]);
        for s in &report.shared {
            t.row(vec![
                s.digest.to_string(),
                human_bytes(s.size),
                s.images.to_string(),
                short_media_type(&s.media_type),
            ]);
        }
        t.write(out)?;
    }
    Ok(Status::Success)
}
