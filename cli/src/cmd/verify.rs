//! `sealift verify [--full] [--repair]`: check the store, print each problem, and exit 1
//! when problems remain (none found, or all repaired, is exit 0).

use std::io::Write;

use anyhow::{Context as _, Result};
use sealift_store::verify::{Problem, VerifyOptions, VerifyReport};
use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::context::{Context, Status};
use crate::output::{self, human_bytes, plural};

#[derive(Serialize)]
struct VerifyDoc<'a> {
    /// True when no problem remains.
    ok: bool,
    #[serde(flatten)]
    report: &'a VerifyReport,
    /// Problems still there after `--repair` (equal to `problems` without it).
    remaining: &'a [Problem],
}

pub fn run(ctx: &Context, args: &VerifyArgs, out: &mut dyn Write) -> Result<Status> {
    let store = ctx.open_store()?;
    let what = format!("verifying {}", store.root().display());
    let spinner = ctx.progress.spinner(what.clone());
    let report = store.verify(VerifyOptions {
        full: args.full,
        repair: args.repair,
    });
    if report.is_err() {
        spinner.finish_and_clear();
    }
    let report = report.with_context(|| what.clone())?;
    let remaining = if args.repair && !report.problems.is_empty() {
        // Repair drops bad records and orphan files; what it cannot fix (a manifest still
        // missing a child, a dangling tag, a layer whose DiffID is wrong) is still there.
        // A fast pass finds the former; content checks it does not redo are carried over.
        spinner.set_message("checking what repair left");
        let again = store.verify(VerifyOptions::default());
        if again.is_err() {
            spinner.finish_and_clear();
        }
        let again = again.with_context(|| what.clone())?;
        let mut left = again.problems;
        left.extend(
            report
                .problems
                .iter()
                .filter(|p| {
                    matches!(
                        p,
                        Problem::WrongDiffId { .. }
                            | Problem::DiffIdCount { .. }
                            | Problem::BadManifest { .. }
                    )
                })
                .cloned(),
        );
        left
    } else {
        report.problems.clone()
    };
    spinner.finish_and_clear();

    let status = if remaining.is_empty() {
        Status::Success
    } else {
        Status::Problems
    };
    if ctx.json {
        output::json(
            out,
            &VerifyDoc {
                ok: remaining.is_empty(),
                report: &report,
                remaining: &remaining,
            },
        )?;
        return Ok(status);
    }
    for p in &report.problems {
        writeln!(out, "{p}")?;
    }
    for r in &report.repaired {
        writeln!(out, "repaired: {r}")?;
    }
    if args.repair {
        for p in &remaining {
            writeln!(out, "remains: {p}")?;
        }
    }
    if ctx.quiet {
        return Ok(status);
    }
    let mut summary = format!("Checked {}", plural(report.checked, "record", "records"));
    if args.full {
        summary.push_str(&format!(
            " ({} re-hashed)",
            human_bytes(report.hashed_bytes)
        ));
    }
    let found = plural(report.problems.len(), "problem", "problems");
    if report.problems.is_empty() {
        summary.push_str(": no problems");
    } else if !args.repair {
        summary.push_str(&format!(": {found}"));
    } else if remaining.is_empty() {
        summary.push_str(&format!(": {found}, all repaired"));
    } else {
        summary.push_str(&format!(
            ": {found}, {} after repair",
            plural(remaining.len(), "remains", "remain")
        ));
    }
    writeln!(out, "{summary}")?;
    Ok(status)
}
