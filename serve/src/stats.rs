//! Counters a running server exposes ([`crate::Server::stats`]): what the connection limit,
//! the idle watchdog and the password throttle did. Tests and operators read them; nothing
//! in the server depends on them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one server. All start at zero.
#[derive(Debug, Default)]
pub struct ServeStats {
    pub(crate) open: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) closed_idle: AtomicU64,
    pub(crate) evicted: AtomicU64,
    pub(crate) bcrypt_checks: AtomicU64,
    pub(crate) bcrypt_running: AtomicU64,
    pub(crate) bcrypt_peak: AtomicU64,
    pub(crate) auth_cache_hits: AtomicU64,
    pub(crate) throttled: AtomicU64,
    pub(crate) bcrypt_limit: AtomicU64,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Acquire)
}

impl ServeStats {
    /// Connections open now.
    pub fn open_connections(&self) -> u64 {
        get(&self.open)
    }
    /// Connections accepted since the start.
    pub fn accepted_connections(&self) -> u64 {
        get(&self.accepted)
    }
    /// Connections closed because nothing happened on them for the idle timeout.
    pub fn closed_idle(&self) -> u64 {
        get(&self.closed_idle)
    }
    /// Idle connections closed early to make room for a new one at the connection limit.
    pub fn evicted(&self) -> u64 {
        get(&self.evicted)
    }
    /// Password checks that ran bcrypt.
    pub fn bcrypt_checks(&self) -> u64 {
        get(&self.bcrypt_checks)
    }
    /// The most bcrypt checks that ever ran at once.
    pub fn bcrypt_peak(&self) -> u64 {
        get(&self.bcrypt_peak)
    }
    /// How many bcrypt checks may run at once.
    pub fn bcrypt_limit(&self) -> u64 {
        get(&self.bcrypt_limit)
    }
    /// Credentials accepted from the memory of recent successful checks, without bcrypt.
    pub fn auth_cache_hits(&self) -> u64 {
        get(&self.auth_cache_hits)
    }
    /// Requests answered 429 because their client was backing off, without bcrypt.
    pub fn throttled(&self) -> u64 {
        get(&self.throttled)
    }
}
