//! A request-rate limit shared by every clone of a [`Registry`](super::Registry), so the
//! jobs of a sync together stay under what a registry allows, and the reading of Docker
//! Hub's `RateLimit-Remaining` header.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces request starts at least `1 / rate` seconds apart.
pub(crate) struct RateLimiter {
    interval: Option<Duration>,
    next: tokio::sync::Mutex<Option<Instant>>,
}

/// Below this many remaining requests, each request waits `LOW_PAUSE` and a warning is logged.
const LOW_REMAINING: u64 = 10;
const LOW_PAUSE: Duration = Duration::from_secs(1);

impl RateLimiter {
    pub(crate) fn new(per_second: Option<f64>) -> RateLimiter {
        RateLimiter {
            interval: per_second
                .filter(|r| r.is_finite() && *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: tokio::sync::Mutex::new(None),
        }
    }

    /// Wait for this request's turn.
    pub(crate) async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let at = next.map_or(now, |n| n.max(now));
            *next = Some(at + interval);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Read `RateLimit-Remaining: <n>;w=<seconds>`: warn and slow down when it runs low.
    pub(crate) async fn observe(&self, host: &str, header: Option<&str>) {
        let Some(remaining) = header.and_then(parse_remaining) else {
            return;
        };
        if remaining <= LOW_REMAINING {
            tracing::warn!(
                host,
                remaining,
                "registry rate limit nearly used up; slowing down"
            );
            let mut next = self.next.lock().await;
            let at = Instant::now() + LOW_PAUSE;
            *next = Some(next.map_or(at, |n| n.max(at)));
        }
    }
}

/// The count in a `RateLimit-Remaining` value (`"76;w=21600"` → 76).
pub fn parse_remaining(v: &str) -> Option<u64> {
    v.split(';').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining() {
        assert_eq!(parse_remaining("76;w=21600"), Some(76));
        assert_eq!(parse_remaining("0"), Some(0));
        assert_eq!(parse_remaining("x;w=1"), None);
    }

    #[tokio::test]
    async fn spaces_requests() {
        let l = RateLimiter::new(Some(50.0));
        let t0 = Instant::now();
        for _ in 0..5 {
            l.wait().await;
        }
        // The first goes at once, then one every 20 ms at the earliest.
        assert!(Instant::now() - t0 >= Duration::from_millis(80));
        let free = RateLimiter::new(None);
        free.wait().await;
    }
}
