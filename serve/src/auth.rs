//! Basic auth against an htpasswd file of bcrypt entries.
//!
//! bcrypt is slow on purpose (tens of milliseconds a check), and a pull makes dozens of
//! requests with the same credentials: a successful check is remembered as a salted
//! SHA-256 of (user, password, hash), so the password itself is never kept. Failures are
//! not remembered. An unknown user costs the same bcrypt check as a wrong password, so
//! timing does not tell which users exist.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::error::ServeError;

/// Remembered successful checks; past this the memory is emptied.
const MAX_REMEMBERED: usize = 4096;

/// Users and their bcrypt hashes.
pub struct Htpasswd {
    users: HashMap<String, String>,
    salt: [u8; 32],
    ok: Arc<Mutex<HashSet<[u8; 32]>>>,
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
        Ok(Htpasswd {
            users,
            salt: rand::random(),
            ok: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    /// Whether the `Authorization` header holds the basic credentials of a user.
    pub async fn check(&self, header: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = header.and_then(basic) else {
            return false;
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
        if known
            && self
                .ok
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key)
        {
            return true;
        }
        let verified = tokio::task::spawn_blocking(move || {
            bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(known && verified) {
            return false;
        }
        let mut ok = self.ok.lock().unwrap_or_else(|p| p.into_inner());
        if ok.len() >= MAX_REMEMBERED {
            ok.clear();
        }
        ok.insert(key);
        true
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
        assert!(h.check(Some(&header("alice", "s3cret"))).await);
        // Remembered, and still right.
        assert!(h.check(Some(&header("alice", "s3cret"))).await);
        assert!(!h.check(Some(&header("alice", "wrong"))).await);
        assert!(!h.check(Some(&header("bob", "s3cret"))).await);
        assert!(!h.check(None).await);
        assert!(!h.check(Some(&HeaderValue::from_static("Bearer x"))).await);
        assert!(!h.check(Some(&HeaderValue::from_static("Basic !!!"))).await);
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
