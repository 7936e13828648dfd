//! `sealift sync`: run the jobs of a config file once (or `--job NAME`), `--dry-run` to see
//! the plan; `sync status` and `sync history` read the run reports kept in the store.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use sealift_sync::job::{job_history, job_status, run_job, JobReport, RunOptions};
use sealift_sync::Config;

use crate::cli::{SyncArgs, SyncCommand};
use crate::context::{Context, Status};
use crate::output::{human_bytes, json, Table};

/// The store a sync uses: `--store`/`SEALIFT_STORE` when given, else the config's
/// `[store] path`, else the default.
fn store_path(ctx: &Context, config: Option<&Config>) -> PathBuf {
    let given = ctx.store_path != sealift_store::default_store_path();
    match config.and_then(|c| c.store.clone()) {
        Some(p) if !given => p,
        _ => ctx.store_path.clone(),
    }
}

fn open_store(ctx: &Context, config: Option<&Config>) -> Result<Arc<sealift_store::Store>> {
    if let Some(store) = ctx.shared_store() {
        return Ok(store);
    }
    let p = store_path(ctx, config);
    sealift_store::Store::open(&p)
        .map(Arc::new)
        .with_context(|| format!("opening store {}", p.display()))
}

/// The store a `sealift sync ...` command line uses, for finding the daemon that may hold it.
pub fn store_for(ctx_store: &std::path::Path, explicit: bool, args: &SyncArgs) -> PathBuf {
    let config = args.config.as_deref().and_then(|p| Config::load(p).ok());
    match config.and_then(|c| c.store) {
        Some(p) if !explicit => p,
        _ => ctx_store.to_path_buf(),
    }
}

fn load(args: &SyncArgs) -> Result<Option<Config>> {
    match &args.config {
        None => Ok(None),
        Some(p) => Ok(Some(Config::load(p)?)),
    }
}

/// Run `sealift sync ...`.
pub fn run(ctx: &Context, args: &SyncArgs, out: &mut dyn Write) -> Result<Status> {
    match &args.command {
        Some(SyncCommand::Status) => {
            let config = load(args)?;
            let store = open_store(ctx, config.as_ref())?;
            let reports = job_status(&store)?;
            print_reports(ctx, &reports, out, true)?;
            Ok(Status::Success)
        }
        Some(SyncCommand::History(h)) => {
            let config = load(args)?;
            let store = open_store(ctx, config.as_ref())?;
            let reports = job_history(&store, h.job.as_deref(), h.limit)?;
            print_reports(ctx, &reports, out, true)?;
            Ok(Status::Success)
        }
        None => run_jobs(ctx, args, out),
    }
}

fn run_jobs(ctx: &Context, args: &SyncArgs, out: &mut dyn Write) -> Result<Status> {
    let Some(path) = &args.config else {
        bail!("sealift sync needs --config FILE (see config.example.toml)");
    };
    let config = Config::load(path)?;
    if args.daemon {
        let store = open_store(ctx, Some(&config))?;
        return super::daemon::run(ctx, &config, store);
    }
    let jobs: Vec<_> = match &args.job {
        Some(name) => vec![config
            .job(name)
            .with_context(|| format!("no job named {name:?} in {}", path.display()))?
            .clone()],
        None => config.jobs.clone(),
    };
    if jobs.is_empty() {
        bail!("{} defines no [[job]]", path.display());
    }
    let store = open_store(ctx, Some(&config))?;
    let rt = crate::runtime::build(crate::runtime::Workers::Transfer)?;
    let show = !ctx.quiet && !ctx.json;
    let opts = RunOptions {
        dry_run: args.dry_run,
        // One registry client pool for every job of this command.
        clients: Some(Arc::new(sealift_sync::job::clients(&config))),
        on_image: show.then(|| {
            Arc::new(|r: &sealift_sync::job::ImageResult| {
                if r.outcome != "skipped" {
                    let why = r
                        .reason
                        .as_deref()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default();
                    eprintln!("  {} {} -> {}{why}", r.outcome, r.source, r.destination);
                }
            }) as sealift_sync::job::ImageCallback
        }),
        ..Default::default()
    };
    // Ctrl-C: no new image is started; those in flight finish, and the report says so.
    let cancel = opts.cancel.clone();
    rt.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.cancel();
        }
    });
    let mut reports = Vec::new();
    for job in &jobs {
        if opts.cancel.is_cancelled() {
            break;
        }
        if show {
            eprintln!(
                "== job {}{}",
                job.name,
                if args.dry_run { " (dry run)" } else { "" }
            );
        }
        let r = rt.block_on(run_job(&store, &config, job, &opts))?;
        reports.push(r);
    }
    print_reports(ctx, &reports, out, false)?;
    Ok(if reports.iter().all(JobReport::ok) {
        Status::Success
    } else {
        Status::Problems
    })
}

fn print_reports(
    ctx: &Context,
    reports: &[JobReport],
    out: &mut dyn Write,
    summary_only: bool,
) -> Result<()> {
    if ctx.json {
        json(out, reports)?;
        return Ok(());
    }
    let mut t = Table::new(&[
        "JOB", "STARTED", "COPIED", "SKIPPED", "FAILED", "REFUSED", "PRUNED", "BYTES", "DURATION",
    ]);
    for r in reports {
        let started = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.started_ms),
        );
        t.row(vec![
            format!("{}{}", r.job, if r.dry_run { " (dry run)" } else { "" }),
            started.to_string(),
            r.copied.len().to_string(),
            r.skipped.len().to_string(),
            (r.failed.len() + usize::from(r.error.is_some())).to_string(),
            r.refused.len().to_string(),
            r.pruned
                .iter()
                .filter(|p| p.removed || r.dry_run)
                .count()
                .to_string(),
            human_bytes(r.bytes),
            format!("{:.1}s", r.duration_ms as f64 / 1000.0),
        ]);
    }
    t.write(out)?;
    for r in reports {
        if let Some(e) = &r.error {
            writeln!(out, "{}: error: {e}", r.job)?;
        }
        for f in r.failed.iter().chain(&r.refused) {
            writeln!(
                out,
                "{}: {} {}: {}",
                r.job,
                f.outcome,
                f.source,
                f.reason.as_deref().unwrap_or("")
            )?;
        }
        if summary_only {
            continue;
        }
        // How an index was written, with `rewrite_index = "auto"`.
        for c in r.copied.iter().filter(|_| !r.dry_run) {
            if let Some(how) = &c.reason {
                writeln!(out, "{}: copied {}: {how}", r.job, c.source)?;
            }
        }
        if r.dry_run {
            for c in &r.copied {
                writeln!(
                    out,
                    "{}: would copy {} -> {} ({})",
                    r.job,
                    c.source,
                    c.destination,
                    human_bytes(c.bytes)
                )?;
            }
        }
        for p in &r.pruned {
            let verb = if p.removed {
                "pruned"
            } else if r.dry_run {
                "would prune"
            } else {
                "kept"
            };
            writeln!(out, "{}: {verb} {} ({})", r.job, p.destination, p.reason)?;
        }
        if r.cancelled {
            writeln!(out, "{}: cancelled before every image was done", r.job)?;
        }
    }
    Ok(())
}
