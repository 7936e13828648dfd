//! Getting tokens: the Authorization value for a set of scopes, from the cache or fetched
//! from the realm the registry's challenge named (anonymously, with basic credentials, or
//! exchanging an identity token as an OAuth2 refresh token), one fetch at a time.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::cache::TokenResponse;
use super::challenge::{basic_header, Scheme, Scope};
use crate::client::{lock, Registry};
use crate::config::is_loopback_host;
use crate::credentials::Credentials;
use crate::error::RegistryError;
use crate::http::{read_limited, redact, Req, SMALL_BODY_LIMIT};

impl Registry {
    /// The Authorization header value for `scopes`, when the registry's scheme is known.
    pub(crate) async fn authorization(
        &self,
        scopes: &[Scope],
    ) -> Result<Option<String>, RegistryError> {
        let scheme = lock(&self.inner.scheme).clone();
        match scheme {
            None => Ok(None),
            Some(Scheme::Basic) => Ok(match self.credentials().await? {
                Some(Credentials::Basic { username, password }) => {
                    Some(basic_header(&username, &password))
                }
                _ => None,
            }),
            Some(Scheme::Bearer { realm, service }) => {
                if let Some(t) = lock(&self.inner.tokens).find(scopes, Instant::now()) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                // One fetch at a time: concurrent requests for the same scope wait for the
                // first and then find its token in the cache.
                let _guard = self.inner.token_fetch.lock().await;
                if let Some(t) = lock(&self.inner.tokens).find(scopes, Instant::now()) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, life) = self.fetch_token(&realm, service.as_deref(), scopes).await?;
                let now = Instant::now();
                lock(&self.inner.tokens).insert(scopes.to_vec(), token.clone(), now + life, now);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// Get a token from the realm: anonymously, with basic credentials (GET), or with an
    /// identity token (OAuth2 refresh-token POST). Retried like any request.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<(String, Duration), RegistryError> {
        let host = self.inner.cfg.host.clone();
        let url = Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
            host: host.clone(),
            detail: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::Unauthorized {
                host,
                detail: format!("token realm {realm:?} is not http(s)"),
            });
        }
        let creds = self.credentials().await?;
        // Credentials go to the realm the registry named (that is how token auth works),
        // but never in clear text over the network unless the registry itself is plain HTTP
        // or the realm is on loopback.
        if creds.is_some()
            && url.scheme() == "http"
            && self.origin().scheme() != "http"
            && !url.host_str().is_some_and(is_loopback_host)
        {
            return Err(RegistryError::Unauthorized {
                host,
                detail: format!(
                    "token realm {} is plain HTTP; refusing to send credentials",
                    redact(&url)
                ),
            });
        }
        let req = token_request(url.clone(), service, scopes, creds.as_ref());
        let policy = &self.inner.cfg.retry;
        let mut tried = 0;
        let resp = loop {
            tried += 1;
            let r = self.send_plain(&req).await;
            let transient = match &r {
                Ok(resp) => {
                    resp.status() == StatusCode::TOO_MANY_REQUESTS
                        || resp.status().is_server_error()
                }
                Err(e) => e.is_transient(),
            };
            if !transient || !policy.may_retry(tried) {
                break r?;
            }
            tokio::time::sleep(policy.delay(tried, None)).await;
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let (code, message) = resp.error_body(self.timeout()).await;
            let who = match creds {
                None => "anonymous access",
                Some(_) => "the credentials",
            };
            let said = message
                .or(code)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            return Err(RegistryError::Unauthorized {
                host,
                detail: format!("token server {} refused {who}{said}", redact(&url)),
            });
        }
        if !status.is_success() {
            return Err(resp.into_error(self.timeout()).await);
        }
        let shown = redact(&resp.url);
        let body = read_limited(resp, SMALL_BODY_LIMIT as u64, self.timeout())
            .await?
            .ok_or_else(|| RegistryError::TooLarge {
                what: format!("token response from {shown}"),
                limit: SMALL_BODY_LIMIT as u64,
                size: SMALL_BODY_LIMIT as u64,
            })?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| RegistryError::BadResponse {
                url: shown.clone(),
                detail: format!("token response is not JSON: {e}"),
            })?;
        tracing::debug!(realm = %shown, scopes = ?scopes.iter().map(Scope::to_string).collect::<Vec<_>>(), "got registry token");
        parsed
            .into_token()
            .ok_or_else(|| RegistryError::BadResponse {
                url: shown,
                detail: "token response has no token".into(),
            })
    }
}

/// The token request for `scopes`: an OAuth2 refresh-token POST with an identity token,
/// else a GET with the scopes in the query (and basic credentials when there are some).
fn token_request(
    mut url: Url,
    service: Option<&str>,
    scopes: &[Scope],
    creds: Option<&Credentials>,
) -> Req {
    let mut req = match creds {
        Some(Credentials::IdentityToken(refresh)) => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "refresh_token");
            form.append_pair("refresh_token", refresh);
            form.append_pair("client_id", "sealift");
            if let Some(s) = service {
                form.append_pair("service", s);
            }
            if !scopes.is_empty() {
                let joined: Vec<String> = scopes.iter().map(Scope::to_string).collect();
                form.append_pair("scope", &joined.join(" "));
            }
            Req::new(Method::POST, url, Vec::new())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(Bytes::from(form.finish()))
        }
        _ => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scopes {
                    q.append_pair("scope", &s.to_string());
                }
            }
            if url.query() == Some("") {
                url.set_query(None);
            }
            let mut r = Req::new(Method::GET, url, Vec::new());
            if let Some(Credentials::Basic { username, password }) = creds {
                r = r.header(AUTHORIZATION, &basic_header(username, password));
            }
            r
        }
    };
    req.headers.insert(
        reqwest::header::ACCEPT,
        HeaderValue::from_static("application/json"),
    );
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_requests() {
        let realm = Url::parse("https://auth.example/token").unwrap();
        let scopes = [Scope::pull("a/b"), Scope::push("c")];
        let anon = token_request(realm.clone(), Some("reg"), &scopes, None);
        assert_eq!(anon.method, Method::GET);
        assert_eq!(
            anon.url.as_str(),
            "https://auth.example/token?service=reg&scope=repository%3Aa%2Fb%3Apull\
             &scope=repository%3Ac%3Apull%2Cpush"
        );
        assert!(anon.headers.get(AUTHORIZATION).is_none());
        assert_eq!(anon.headers["accept"], "application/json");

        let basic = Credentials::Basic {
            username: "u".into(),
            password: "p".into(),
        };
        let r = token_request(realm.clone(), None, &[], Some(&basic));
        assert_eq!(r.url.as_str(), "https://auth.example/token");
        assert_eq!(r.headers[AUTHORIZATION], "Basic dTpw");

        let id = Credentials::IdentityToken("refresh".into());
        let r = token_request(realm, Some("reg"), &scopes[..1], Some(&id));
        assert_eq!(r.method, Method::POST);
        assert!(r.headers.get(AUTHORIZATION).is_none());
        assert_eq!(
            r.body.as_deref(),
            Some(
                &b"grant_type=refresh_token&refresh_token=refresh&client_id=sealift\
                   &service=reg&scope=repository%3Aa%2Fb%3Apull"[..]
            )
        );
    }
}
