//! Progress bars and spinners on stderr. They draw only when stderr is a terminal and the
//! user did not ask for `--quiet` or `--json`, so pipes and logs never get escape codes.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether bars may draw at all.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    visible: bool,
}

/// A byte-progress callback, as the transfer libraries take it: (bytes done, bytes total).
pub type ByteCallback = Arc<dyn Fn(u64, u64) + Send + Sync>;

impl Progress {
    /// Visible unless `quiet` or stderr is not a terminal.
    pub fn new(quiet: bool) -> Progress {
        Progress {
            visible: !quiet && std::io::stderr().is_terminal(),
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        }
    }

    /// A spinner with a message, ticking on its own until finished or dropped.
    pub fn spinner(&self, message: impl Into<String>) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, self.target());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        if self.visible {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        bar
    }

    /// A byte bar whose length is set by the first callback (0 total = unknown: spinner).
    pub fn bytes(&self, message: impl Into<String>) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(None, self.target());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(message.into());
        bar
    }
}

/// A callback that moves `bar`: sets its length to the total (when known) and its position.
pub fn byte_callback(bar: &ProgressBar) -> ByteCallback {
    let bar = bar.clone();
    Arc::new(move |done, total| {
        if total > 0 && bar.length() != Some(total) {
            bar.set_length(total);
        }
        bar.set_position(done);
    })
}

/// One bar per blob under an overall bar: a transfer of many layers shows which are moving.
/// Bars appear on a blob's first bytes and vanish when it is done.
pub fn per_blob(overall: &ProgressBar) -> sealift_copy::copy::BlobProgress {
    use std::collections::HashMap;
    use std::sync::Mutex;
    let multi = indicatif::MultiProgress::new();
    if overall.is_hidden() {
        multi.set_draw_target(ProgressDrawTarget::hidden());
    }
    let overall = multi.add(overall.clone());
    let bars: Mutex<HashMap<String, ProgressBar>> = Mutex::new(HashMap::new());
    let style =
        ProgressStyle::with_template("  {msg} [{bar:25}] {decimal_bytes}/{decimal_total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    Arc::new(move |digest, done, size| {
        let key = digest.to_string();
        let mut bars = bars.lock().unwrap_or_else(|p| p.into_inner());
        let bar = bars.entry(key.clone()).or_insert_with(|| {
            let b = multi.insert_after(&overall, ProgressBar::new(size));
            b.set_style(style.clone());
            b.set_message(digest.hex()[..12].to_string());
            b
        });
        bar.set_position(done);
        if done >= size {
            bar.finish_and_clear();
            bars.remove(&key);
        }
    })
}
