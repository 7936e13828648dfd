//! When a job runs on its own: a fixed interval (`"6h"`) or a cron expression
//! (`"0 3 * * *"`, five or six fields).

use std::time::{Duration, SystemTime};

/// A job's schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every so often, counted from the end of the previous run.
    Every(Duration),
    /// At the times a cron expression names (UTC).
    Cron(Box<croner::Cron>),
}

impl Schedule {
    /// Parse `"30m"`, `"6h"`, `"1d 12h"` (humantime) or a cron expression.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty schedule".into());
        }
        if let Ok(d) = humantime::parse_duration(s) {
            if d < Duration::from_secs(1) {
                return Err(format!("interval {s:?} is under one second"));
            }
            return Ok(Schedule::Every(d));
        }
        if s.split_whitespace().count() < 5 {
            return Err(format!(
                "{s:?} is neither an interval (\"30m\", \"6h\") nor a cron expression (\"0 3 * * *\")"
            ));
        }
        let cron = croner::Cron::new(s)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("bad cron expression {s:?}: {e}"))?;
        Ok(Schedule::Cron(Box::new(cron)))
    }

    /// The first time after `now` the job is due.
    pub fn next_after(&self, now: SystemTime) -> SystemTime {
        match self {
            Schedule::Every(d) => now + *d,
            Schedule::Cron(c) => {
                let at: chrono::DateTime<chrono::Utc> = now.into();
                match c.find_next_occurrence(&at, false) {
                    Ok(next) => next.into(),
                    // An expression with no future time (Feb 30th): never.
                    Err(_) => now + Duration::from_secs(100 * 365 * 24 * 3600),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_cron() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000); // 22:13:20 UTC
        let s = Schedule::parse("6h").unwrap();
        assert_eq!(s.next_after(t0), t0 + Duration::from_secs(6 * 3600));
        let c = Schedule::parse("0 3 * * *").unwrap();
        let next = c.next_after(t0);
        let secs = next
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(secs % 86400, 3 * 3600);
        assert!(next > t0 && next < t0 + Duration::from_secs(86400));
        assert!(Schedule::parse("soon").is_err());
        assert!(Schedule::parse("0 99 * * *").is_err());
        assert!(Schedule::parse("0s").is_err());
    }
}
