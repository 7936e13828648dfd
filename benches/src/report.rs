//! The table the benchmark binaries print: steps with their time, this process's RSS, and a
//! detail column; and small formatting and measuring helpers.

use std::path::Path;
use std::time::Duration;

/// One row of the final table.
pub struct Row {
    step: String,
    secs: Option<f64>,
    /// This process's resident and peak resident KiB right after the step.
    rss: (u64, u64),
    detail: String,
}

/// The final table.
#[derive(Default)]
pub struct Report(Vec<Row>);

impl Report {
    /// Record a step (printed at once to stderr) with this process's RSS after it.
    pub fn add(&mut self, step: impl Into<String>, d: Option<Duration>, detail: impl Into<String>) {
        let (step, detail) = (step.into(), detail.into());
        match d {
            Some(d) => eprintln!("  {step}: {:.2} s {detail}", d.as_secs_f64()),
            None => eprintln!("  {step}: {detail}"),
        }
        let rss = (
            status_kib("VmRSS:").unwrap_or(0),
            status_kib("VmHWM:").unwrap_or(0),
        );
        self.0.push(Row {
            step,
            secs: d.map(|d| d.as_secs_f64()),
            rss,
            detail,
        });
    }

    /// Print the table to stdout.
    pub fn print(&self) {
        let w = self
            .0
            .iter()
            .map(|r| r.step.len())
            .max()
            .unwrap_or(4)
            .max(4);
        println!(
            "{:<w$}  {:>9}  {:>16}  detail",
            "step", "seconds", "RSS/peak MiB"
        );
        for Row {
            step,
            secs,
            rss: (rss, hwm),
            detail,
        } in &self.0
        {
            let s = secs.map_or("-".to_string(), |s| format!("{s:.2}"));
            let r = format!("{:.0}/{:.0}", *rss as f64 / 1024.0, *hwm as f64 / 1024.0);
            println!("{step:<w$}  {s:>9}  {r:>16}  {detail}");
        }
    }
}

/// `n` per second of `d`.
pub fn per_sec(n: usize, d: Duration) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64().max(1e-9))
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A KiB field of /proc/self/status: `VmRSS:` (resident now), `VmHWM:` (peak).
pub fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (files, apparent bytes, allocated bytes) under `dir`.
pub fn disk_usage(dir: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut out = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.0 += 1;
                out.1 += m.len();
                out.2 += m.blocks() * 512;
            }
        }
    }
    out
}
