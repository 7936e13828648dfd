//! Basic auth against an htpasswd file of bcrypt entries, with password guessing kept
//! from starving everyone else.
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), and a pull makes dozens of
//! requests with the same credentials: a successful check is remembered for a few minutes
//! as a salted SHA-256 of (user, password, hash), so the password itself is never kept.
//! Failures are not remembered. An unknown user costs the same bcrypt check as a wrong
//! password, so timing does not tell which users exist.
//!
//! Guessing is contained three ways: at most `bcrypt_limit` checks run at once (half the
//! cores, so serving goes on beside them); a client (an IPv4 address, or an IPv6 /64) past
//! a few failures backs off, doubling from 1 s to 60 s, and its requests are answered 429
//! without running bcrypt; and a client that has failed may have only a few checks queued
//! at once. Remembered credentials are accepted before the back-off is consulted, so a
//! user already signed in is not locked out by someone guessing from the same address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tokio::sync::Semaphore;

use crate::error::ServeError;
use crate::stats::ServeStats;

/// Remembered successful checks; past this the memory is emptied.
const MAX_REMEMBERED: usize = 4096;
/// How long a successful check is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// Failures a client may make before it backs off.
const FREE_FAILURES: u32 = 5;
/// The first back-off, doubled with each further failure up to [`MAX_BACKOFF`].
const BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A client's failures are forgotten after this long without one.
const FORGET: Duration = Duration::from_secs(900);
/// Checks a client that has failed may have queued or running at once.
const MAX_PENDING: u32 = 2;
/// Clients tracked; past this, those not backing off are forgotten.
const MAX_CLIENTS: usize = 65536;

/// What a check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials are a user's.
    Ok,
    /// No credentials, or wrong ones.
    Unauthorized,
    /// The client is backing off: try again after this many seconds.
    Throttled(u64),
}

#[derive(Default)]
struct Client {
    failures: u32,
    pending: u32,
    last_failure: Option<Instant>,
    until: Option<Instant>,
}

/// Users and their bcrypt hashes, and what guards them.
pub struct Htpasswd {
    users: HashMap<String, String>,
    salt: [u8; 32],
    ok: Mutex<HashMap<[u8; 32], Instant>>,
    clients: Mutex<HashMap<IpAddr, Client>>,
    bcrypt: Arc<Semaphore>,
    bcrypt_limit: usize,
    backoff: Duration,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The key a client backs off under: IPv6 clients usually hold a whole /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
    }
}

/// Counts a queued or running check of a client until dropped.
struct Pending<'a> {
    auth: &'a Htpasswd,
    key: Option<IpAddr>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            if let Some(c) = lock(&self.auth.clients).get_mut(&k) {
                c.pending = c.pending.saturating_sub(1);
            }
        }
    }
}

/// Counts a running bcrypt check until dropped.
struct Running<'a>(&'a ServeStats);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.bcrypt_running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Htpasswd {
    /// Read and check the file: every non-empty, non-comment line must be `user:bcrypt`.
    pub fn load(path: &Path) -> Result<Htpasswd, ServeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |line: usize, reason: String| ServeError::Htpasswd {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| bad(i + 1, "expected user:hash".into()))?;
            if user.is_empty() {
                return Err(bad(i + 1, "empty user name".into()));
            }
            let bcrypt = ["$2a$", "$2b$", "$2x$", "$2y$"]
                .iter()
                .any(|p| hash.starts_with(p));
            if !bcrypt || hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(bad(
                    i + 1,
                    format!(
                        "the entry for {user:?} is not a bcrypt hash; only bcrypt is accepted \
                         (make one with `htpasswd -B`)"
                    ),
                ));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err(bad(0, "no users in the file".into()));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let bcrypt_limit = (cores / 2).max(1);
        Ok(Htpasswd {
            users,
            salt: rand::random(),
            ok: Mutex::new(HashMap::new()),
            clients: Mutex::new(HashMap::new()),
            bcrypt: Arc::new(Semaphore::new(bcrypt_limit)),
            bcrypt_limit,
            backoff: BACKOFF,
        })
    }

    /// Record how many bcrypt checks may run at once in `stats`.
    pub fn publish_limit(&self, stats: &ServeStats) {
        stats
            .bcrypt_limit
            .store(self.bcrypt_limit as u64, Ordering::Release);
    }

    /// Whether the `Authorization` header holds the basic credentials of a user, for a
    /// request from `peer`.
    pub async fn check(
        &self,
        header: Option<&HeaderValue>,
        peer: Option<IpAddr>,
        stats: &ServeStats,
    ) -> Verdict {
        let Some((user, password)) = header.and_then(basic) else {
            return Verdict::Unauthorized;
        };
        let (known, hash) = match self.users.get(&user) {
            Some(h) => (true, h.clone()),
            // Pay the same bcrypt cost as a known user would.
            None => (
                false,
                self.users.values().next().cloned().unwrap_or_default(),
            ),
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(self.salt)
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .finalize()
            .into();
        let now = Instant::now();
        if known
            && lock(&self.ok)
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < REMEMBER)
        {
            stats.auth_cache_hits.fetch_add(1, Ordering::AcqRel);
            return Verdict::Ok;
        }
        let client = peer.map(client_key);
        if let Some(k) = client {
            if let Some(wait) = self.admit(k, now) {
                stats.throttled.fetch_add(1, Ordering::AcqRel);
                return Verdict::Throttled(wait);
            }
        }
        let _pending = Pending {
            auth: self,
            key: client,
        };
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return Verdict::Unauthorized;
        };
        stats.bcrypt_checks.fetch_add(1, Ordering::AcqRel);
        let running = stats.bcrypt_running.fetch_add(1, Ordering::AcqRel) + 1;
        stats.bcrypt_peak.fetch_max(running, Ordering::AcqRel);
        let _running = Running(stats);
        let verified = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        let ok = known && verified;
        if let Some(k) = client {
            self.settle(k, ok);
        }
        if !ok {
            return Verdict::Unauthorized;
        }
        let mut remembered = lock(&self.ok);
        if remembered.len() >= MAX_REMEMBERED {
            remembered.retain(|_, t| now.duration_since(*t) < REMEMBER);
            if remembered.len() >= MAX_REMEMBERED {
                remembered.clear();
            }
        }
        remembered.insert(key, Instant::now());
        Verdict::Ok
    }

    /// Whether client `k` may have a check now; if not, the seconds to wait. A check let
    /// through is counted as pending until [`Htpasswd::settle`].
    fn admit(&self, k: IpAddr, now: Instant) -> Option<u64> {
        let mut clients = lock(&self.clients);
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&k) {
            clients.retain(|_, c| c.until.is_some_and(|u| u > now) || c.pending > 0);
            if clients.len() >= MAX_CLIENTS {
                clients.clear();
            }
        }
        let c = clients.entry(k).or_default();
        if c.last_failure
            .is_some_and(|t| now.duration_since(t) > FORGET)
        {
            *c = Client {
                pending: c.pending,
                ..Client::default()
            };
        }
        if let Some(until) = c.until.filter(|u| *u > now) {
            return Some(until.duration_since(now).as_secs().max(1));
        }
        if c.failures > 0 && c.pending >= MAX_PENDING {
            return Some(self.backoff.as_secs().max(1));
        }
        c.pending += 1;
        None
    }

    /// Record the outcome of client `k`'s check.
    fn settle(&self, k: IpAddr, ok: bool) {
        let mut clients = lock(&self.clients);
        let Some(c) = clients.get_mut(&k) else {
            return;
        };
        if ok {
            c.failures = 0;
            c.until = None;
            c.last_failure = None;
            return;
        }
        let now = Instant::now();
        c.failures = c.failures.saturating_add(1);
        c.last_failure = Some(now);
        if c.failures > FREE_FAILURES {
            let doublings = (c.failures - FREE_FAILURES - 1).min(16);
            let wait = self
                .backoff
                .saturating_mul(1 << doublings)
                .min(MAX_BACKOFF.max(self.backoff));
            c.until = Some(now + wait);
        }
    }
}

/// (user, password) from `Basic <base64>`.
fn basic(v: &HeaderValue) -> Option<(String, String)> {
    let v = v.to_str().ok()?.trim();
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::NamedTempFile, Result<Htpasswd, ServeError>) {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        let r = Htpasswd::load(f.path());
        (f, r)
    }

    fn header(user: &str, pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    #[tokio::test]
    async fn bcrypt_entries_check_passwords() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let (_f, h) = file(&format!("# users\n\nalice:{hash}\n"));
        let h = h.unwrap();
        let st = ServeStats::default();
        let check = |v: HeaderValue| {
            let (h, st) = (&h, &st);
            async move { h.check(Some(&v), None, st).await }
        };
        assert_eq!(check(header("alice", "s3cret")).await, Verdict::Ok);
        // Remembered, and still right.
        assert_eq!(check(header("alice", "s3cret")).await, Verdict::Ok);
        assert_eq!(st.auth_cache_hits(), 1);
        assert_eq!(check(header("alice", "wrong")).await, Verdict::Unauthorized);
        assert_eq!(check(header("bob", "s3cret")).await, Verdict::Unauthorized);
        assert_eq!(h.check(None, None, &st).await, Verdict::Unauthorized);
        for bad in ["Bearer x", "Basic !!!"] {
            assert_eq!(
                check(HeaderValue::from_static(bad)).await,
                Verdict::Unauthorized
            );
        }
        assert_eq!(st.bcrypt_checks(), 3);
    }

    #[tokio::test]
    async fn a_guessing_client_backs_off_without_bcrypt() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let (_f, h) = file(&format!("alice:{hash}\n"));
        let mut h = h.unwrap();
        // Long enough that no back-off runs out during the test.
        h.backoff = Duration::from_secs(3600);
        let st = ServeStats::default();
        let guesser: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        // Signed in before the guessing starts.
        let good = header("alice", "s3cret");
        assert_eq!(h.check(Some(&good), Some(guesser), &st).await, Verdict::Ok);
        for _ in 0..=FREE_FAILURES {
            let v = h
                .check(Some(&header("alice", "guess")), Some(guesser), &st)
                .await;
            assert_eq!(v, Verdict::Unauthorized);
        }
        let ran = st.bcrypt_checks();
        assert_eq!(ran, 1 + u64::from(FREE_FAILURES) + 1);
        for _ in 0..10 {
            let v = h
                .check(Some(&header("alice", "guess2")), Some(guesser), &st)
                .await;
            assert!(matches!(v, Verdict::Throttled(s) if s >= 1), "{v:?}");
        }
        assert_eq!(
            st.bcrypt_checks(),
            ran,
            "a client backing off costs no bcrypt"
        );
        assert_eq!(st.throttled(), 10);
        // Remembered credentials from the same address still pass; another client (in
        // the same /64 or not) is not affected.
        assert_eq!(h.check(Some(&good), Some(guesser), &st).await, Verdict::Ok);
        let v = h.check(Some(&header("alice", "x")), Some(other), &st).await;
        assert_eq!(v, Verdict::Unauthorized);
        let same64: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(client_key(other), client_key(same64));
        assert_ne!(
            client_key(other),
            client_key("2001:db8:0:1::1".parse().unwrap())
        );
        assert!(st.bcrypt_peak() <= st.bcrypt_limit().max(1));
    }

    #[test]
    fn non_bcrypt_entries_are_refused_by_line() {
        let (_f, r) = file("alice:$apr1$abc$def\n");
        let e = r.err().unwrap().to_string();
        assert!(e.contains("line 1") && e.contains("bcrypt"), "{e}");
        let (_f, r) = file("\nbob:{SHA}abc\n");
        assert!(r.err().unwrap().to_string().contains("line 2"));
        let (_f, r) = file("justaname\n");
        assert!(r.err().unwrap().to_string().contains("user:hash"));
        let (_f, r) = file("# nobody\n");
        assert!(r.err().unwrap().to_string().contains("no users"));
    }
}
