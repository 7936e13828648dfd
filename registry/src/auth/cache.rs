//! The token cache: bearer tokens per scope set, until shortly before they expire; a token
//! for `pull,push` also serves `pull`. And the token server's answer.

use std::fmt;
use std::time::{Duration, Instant};

use super::challenge::Scope;

/// A token server's answer.
#[derive(serde::Deserialize)]
pub struct TokenResponse {
    /// The token (docker's name).
    #[serde(default)]
    pub token: Option<String>,
    /// The token (OAuth2's name).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Lifetime in seconds (default 60).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long it may be cached.
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        // Docker's minimum lifetime is 60 s; refresh a little early so a token does not
        // expire between the cache check and the request.
        let life = self.expires_in.unwrap_or(60).max(60);
        let margin = (life / 10).clamp(5, 30);
        Some((token, Duration::from_secs(life - margin)))
    }
}

/// A cached bearer token. Its `Debug` never shows the token.
#[derive(Clone)]
struct CachedToken {
    scopes: Vec<Scope>,
    token: String,
    expires: Instant,
}

/// Tokens per scope set.
#[derive(Default)]
pub struct TokenCache {
    tokens: Vec<CachedToken>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl TokenCache {
    /// A live token whose scopes cover all of `wanted`.
    pub fn find(&self, wanted: &[Scope], now: Instant) -> Option<String> {
        self.tokens
            .iter()
            .filter(|t| t.expires > now)
            .find(|t| {
                wanted
                    .iter()
                    .all(|w| t.scopes.iter().any(|have| have.covers(w)))
            })
            .map(|t| t.token.clone())
    }

    /// Remember a token for `scopes` (dropping expired ones and any for the same scopes).
    pub fn insert(&mut self, scopes: Vec<Scope>, token: String, expires: Instant, now: Instant) {
        self.tokens
            .retain(|t| t.expires > now && t.scopes != scopes);
        // Bound the cache: a long sync over thousands of repositories must not grow it
        // without limit. The oldest entries go first.
        if self.tokens.len() >= 256 {
            self.tokens.remove(0);
        }
        self.tokens.push(CachedToken {
            scopes,
            token,
            expires,
        });
    }

    /// Forget `token` (the registry refused it).
    pub fn forget(&mut self, token: &str) {
        self.tokens.retain(|t| t.token != token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_cache() {
        let now = Instant::now();
        let mut c = TokenCache::default();
        c.insert(
            vec![Scope::push("r")],
            "t1".into(),
            now + Duration::from_secs(60),
            now,
        );
        assert_eq!(c.find(&[Scope::pull("r")], now).as_deref(), Some("t1"));
        assert_eq!(c.find(&[Scope::pull("s")], now), None);
        assert_eq!(
            c.find(&[Scope::pull("r")], now + Duration::from_secs(61)),
            None
        );
        c.forget("t1");
        assert_eq!(c.find(&[Scope::pull("r")], now), None);
        assert!(!format!("{c:?}").contains("t1"));
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.into_token(), Some(("a".into(), Duration::from_secs(270))));
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert_eq!(t.into_token(), None);
    }
}
