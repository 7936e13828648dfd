//! The 401 flow: read the challenge, learn the scheme, re-authenticate once with wider
//! scopes, and say exactly what was refused when that fails. Credentials are explicit or
//! looked up once, off the async threads.

use reqwest::StatusCode;

use super::challenge::{choose_scheme, merge_scopes, parse_challenges, Challenge, Scheme, Scope};
use crate::client::{lock, Registry};
use crate::credentials::{self, AuthEnv, Credentials};
use crate::error::RegistryError;
use crate::http::{same_origin, Req, Resp};

impl Registry {
    /// One try of a request, authenticating on a 401 from the registry (once).
    pub(crate) async fn send_authed(&self, req: &Req) -> Result<Resp, RegistryError> {
        let mut scopes = req.scopes.clone();
        let mut reauthed = false;
        loop {
            let authz = self.authorization(&scopes).await?;
            let resp = self.send_redirects(req, authz.as_deref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || !same_origin(&resp.url, &self.origin())
            {
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .flat_map(|v| parse_challenges(&String::from_utf8_lossy(v.as_bytes())))
                .collect();
            let chosen = choose_scheme(&challenges);
            let insufficient = chosen
                .as_ref()
                .is_some_and(|c| c.2.as_deref() == Some("insufficient_scope"));
            let Some((scheme, challenge_scopes, _)) = chosen.filter(|_| !reauthed) else {
                let why = if insufficient {
                    Refusal::Scope(&scopes)
                } else {
                    Refusal::of(authz.as_deref())
                };
                return Err(self.unauthorized(resp, why).await);
            };
            reauthed = true;
            if let Some(sent) = &authz {
                if let Some(token) = sent.strip_prefix("Bearer ") {
                    lock(&self.inner.tokens).forget(token);
                }
            }
            let creds = self.credentials().await?;
            match &scheme {
                Scheme::Basic if !matches!(creds, Some(Credentials::Basic { .. })) => {
                    *lock(&self.inner.scheme) = Some(scheme);
                    return Err(self.unauthorized(resp, Refusal::Denied).await);
                }
                // Basic credentials were sent and refused: sending them again won't help.
                Scheme::Basic if authz.as_deref().is_some_and(|a| a.starts_with("Basic ")) => {
                    return Err(self.unauthorized(resp, Refusal::Credentials).await);
                }
                _ => {}
            }
            *lock(&self.inner.scheme) = Some(scheme);
            scopes = merge_scopes(scopes.into_iter().chain(challenge_scopes));
            drop(resp);
        }
    }

    /// An Unauthorized error for a 401, saying what was tried.
    async fn unauthorized(&self, resp: Resp, why: Refusal<'_>) -> RegistryError {
        let host = self.inner.cfg.host.clone();
        let had_creds = self.inner.cfg.credentials.is_some()
            || self.inner.looked_up.get().is_some_and(|c| c.is_some());
        let (code, message) = resp.error_body(self.timeout()).await;
        let said = match (code, message) {
            (Some(c), Some(m)) => format!(" ({c}: {m})"),
            (Some(c), None) => format!(" ({c})"),
            (None, Some(m)) => format!(" ({m})"),
            (None, None) => String::new(),
        };
        let detail = match why {
            _ if !had_creds => {
                format!("authentication required and no credentials were found for {host}{said}")
            }
            Refusal::Scope(scopes) => {
                let wanted: Vec<String> = scopes.iter().map(Scope::to_string).collect();
                format!(
                    "access denied: the credentials do not grant {}{said}",
                    wanted.join(" ")
                )
            }
            Refusal::Credentials => format!("credentials refused{said}"),
            Refusal::Denied => format!("access denied{said}"),
        };
        RegistryError::Unauthorized { host, detail }
    }

    /// The credentials to use: explicit, else looked up once (on first need).
    pub(crate) async fn credentials(&self) -> Result<Option<Credentials>, RegistryError> {
        if let Some(c) = &self.inner.cfg.credentials {
            return Ok(Some(c.clone()));
        }
        let inner = self.inner.clone();
        self.inner
            .looked_up
            .get_or_try_init(|| async move {
                let host = inner.cfg.host.clone();
                let env = inner
                    .cfg
                    .auth_env
                    .clone()
                    .unwrap_or_else(AuthEnv::from_process);
                // Credential helpers are processes: keep them off the async threads.
                tokio::task::spawn_blocking(move || credentials::lookup(&host, &env))
                    .await
                    .map_err(|e| RegistryError::Credentials {
                        host: inner.cfg.host.clone(),
                        detail: format!("lookup task failed: {e}"),
                    })?
            })
            .await
            .cloned()
    }
}

/// Why a 401 is final, for the error message.
enum Refusal<'a> {
    /// The token lacks these scopes (`error="insufficient_scope"`).
    Scope(&'a [Scope]),
    /// Basic credentials were sent and refused.
    Credentials,
    /// Anything else.
    Denied,
}

impl Refusal<'_> {
    fn of(sent: Option<&str>) -> Refusal<'static> {
        match sent {
            Some(a) if a.starts_with("Basic ") => Refusal::Credentials,
            _ => Refusal::Denied,
        }
    }
}
