//! Test-only crash points, so crash tests can kill a process at a chosen step of its work
//! (chosen by progress, not by time).
//!
//! `SEALIFT_FAULT=<point>:<n>` makes the process SIGKILL itself the `n`-th time (from 1) it
//! reaches `point`. Only the names in [`POINTS`] are accepted; anything else is warned
//! about once and ignored, so a stray or mistyped variable never kills anything. Unset, a
//! point costs one load of an initialised `OnceLock` and a comparison.

use std::sync::OnceLock;

/// The points a test may name.
pub const POINTS: &[&str] = &[
    // GC: a record's removal has been applied in memory, not yet flushed.
    "gc.after_delete",
    // GC: the removals are durable; the file of this one is about to be unlinked.
    "gc.before_unlink",
    // GC: this file is unlinked; the final orphan sweep and flush have not run.
    "gc.after_unlink",
    // Ingest batch: the n-th item is staged (not yet sealed, published or recorded).
    "batch.after_stage",
    // Ingest: the n-th commit (a lone put's or a batch's) has published its bytes and
    // made them durable; no record of them is committed.
    "ingest.after_publish",
    // Migrate: the n-th blob is published in the new backend; the location is not switched.
    "migrate.after_copy",
];

/// The environment variable naming the point.
pub const VAR: &str = "SEALIFT_FAULT";

fn configured() -> Option<&'static (String, u64)> {
    static FAULT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let v = std::env::var(VAR).ok()?;
            let parsed = v
                .split_once(':')
                .and_then(|(p, n)| Some((p, n.parse::<u64>().ok()?)))
                .filter(|(p, n)| POINTS.contains(p) && *n >= 1);
            if parsed.is_none() {
                tracing::warn!("ignoring {VAR}={v:?}: expected <point>:<n> with a point of {POINTS:?} and n >= 1");
            }
            parsed.map(|(p, n)| (p.to_string(), n))
        })
        .as_ref()
}

/// Count an arrival at a point that has no natural progress number of its own.
pub(crate) fn count(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

/// Kill this process if `point` is the configured one and this is its `n`-th arrival.
pub(crate) fn reached(point: &str, n: u64) {
    let Some((p, at)) = configured() else {
        return;
    };
    if p != point || *at != n {
        return;
    }
    tracing::warn!("{VAR}: killing the process at {point}:{n}");
    // SIGKILL, as a crash would: no destructor, no flush. (unsafe code is denied, so no
    // libc::kill; `kill` is in every base system.)
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    // Not reached once the signal lands; abort is the next best crash if `kill` failed.
    std::process::abort();
}
