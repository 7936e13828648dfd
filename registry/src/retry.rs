//! When to try again, and how long to wait first.
//!
//! Connection failures, timeouts, 5xx and 429 are retried with exponential backoff and
//! jitter; a `Retry-After` in seconds is honoured, capped at twice the maximum delay so a
//! hostile or confused server cannot park a copy for an hour.

use std::time::Duration;

use rand::Rng;

/// How many times to try, and how long to wait between tries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries of one request, the first included (at least 1).
    pub attempts: u32,
    /// Delay before the second try; doubled for each further try.
    pub base_delay: Duration,
    /// Largest backoff delay (before jitter).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Whether a try numbered `tried` (1 = the first) may be followed by another.
    pub fn may_retry(&self, tried: u32) -> bool {
        tried < self.attempts.max(1)
    }

    /// The delay before the next try after `tried` tries: `Retry-After` when the server sent
    /// one (capped at twice `max_delay`), else the backoff with jitter.
    pub fn delay(&self, tried: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(ra) = retry_after {
            return ra.min(self.max_delay.saturating_mul(2));
        }
        let backoff = self.backoff(tried);
        // Equal jitter: half fixed, half random, so concurrent clients spread out but
        // every client still waits at least half the backoff.
        let half = backoff / 2;
        let spread = backoff.saturating_sub(half);
        let extra_nanos = if spread.is_zero() {
            0
        } else {
            rand::thread_rng().gen_range(0..=spread.as_nanos().min(u64::MAX as u128) as u64)
        };
        half + Duration::from_nanos(extra_nanos)
    }

    /// The un-jittered backoff after `tried` tries: `base * 2^(tried-1)`, capped.
    pub fn backoff(&self, tried: u32) -> Duration {
        let exp = tried.saturating_sub(1).min(30);
        self.base_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay)
    }
}

/// Parse a `Retry-After` value given in seconds. HTTP-date forms are ignored (the
/// backoff applies instead).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(200));
        assert_eq!(p.backoff(2), Duration::from_millis(400));
        assert_eq!(p.backoff(3), Duration::from_millis(800));
        assert_eq!(p.backoff(20), Duration::from_secs(10));
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(10));
        for tried in 1..8 {
            let d = p.delay(tried, None);
            assert!(d >= p.backoff(tried) / 2 && d <= p.backoff(tried), "{d:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_and_capped() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(20)
        );
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("99999999999999999999"), None);
    }

    #[test]
    fn attempts() {
        let p = RetryPolicy::default();
        assert!(p.may_retry(4));
        assert!(!p.may_retry(5));
        assert!(!RetryPolicy::none().may_retry(1));
        let zero = RetryPolicy {
            attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(!zero.may_retry(1));
    }
}
