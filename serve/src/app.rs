//! The axum application: shared state, the access log, auth, and dispatch by route.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State as Extract};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use sealift_oci::Repo;
use sealift_store::Store;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::{Htpasswd, Verdict};
use crate::error::{ApiError, Code};
use crate::reach::Reach;
use crate::route::{self, Route};
use crate::stats::ServeStats;

/// `Docker-Distribution-API-Version`, on every response: clients probe `/v2/` for it.
pub const API_VERSION: &str = "registry/2.0";

/// What every request shares.
pub struct State {
    /// The store, open for the server's lifetime.
    pub store: Arc<Store>,
    /// What each repository reaches.
    pub reach: Reach,
    /// Basic auth, when configured.
    pub auth: Option<Htpasswd>,
    /// Counters.
    pub stats: Arc<ServeStats>,
}

impl State {
    /// Wrap the store.
    pub fn new(store: Arc<Store>, auth: Option<Htpasswd>, stats: Arc<ServeStats>) -> Arc<State> {
        Arc::new(State {
            store,
            reach: Reach::new(),
            auth,
            stats,
        })
    }

    /// Run blocking store work off the async threads.
    pub async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> Result<T, ApiError> + Send + 'static,
    {
        let s = self.clone();
        tokio::task::spawn_blocking(move || f(&s))
            .await
            .map_err(|e| ApiError::store("store task", &e))?
    }

    /// Whether `repo` has any tag: a repository without tags does not exist here.
    pub fn repo_exists(&self, repo: &Repo) -> Result<bool, ApiError> {
        Ok(self.store.tags()?.iter().any(|t| &t.repo == repo))
    }

    /// A "not here" error for `repo`: NAME_UNKNOWN when it has no tags at all, else the
    /// given one.
    pub fn unknown(&self, repo: &Repo, otherwise: ApiError) -> ApiError {
        match self.repo_exists(repo) {
            Ok(false) => ApiError::new(
                StatusCode::NOT_FOUND,
                Code::NameUnknown,
                format!("repository {repo} is not in the store (no tags)"),
            ),
            Ok(true) => otherwise,
            Err(e) => e,
        }
    }
}

/// The router with its layers.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .fallback(dispatch)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::map_response(api_version))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let peer = req.extensions().get::<SocketAddr>().copied();
                    tracing::info_span!(
                        "request",
                        peer = %peer.map(|p| p.to_string()).unwrap_or_default(),
                        method = %req.method(),
                        uri = %req.uri(),
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .with_state(state)
}

async fn api_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static(API_VERSION),
    );
    resp
}

async fn authenticate(Extract(state): Extract<Arc<State>>, req: Request, next: Next) -> Response {
    if let Some(auth) = &state.auth {
        let peer = req.extensions().get::<SocketAddr>().map(SocketAddr::ip);
        match auth
            .check(req.headers().get(header::AUTHORIZATION), peer, &state.stats)
            .await
        {
            Verdict::Ok => {}
            Verdict::Unauthorized => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    Code::Unauthorized,
                    "authentication required: basic auth with a user of the htpasswd file",
                )
                .with_header(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"sealift\", charset=\"UTF-8\""),
                )
                .into_response()
            }
            Verdict::Throttled(secs) => {
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    Code::TooManyRequests,
                    format!("too many failed sign-ins from this address: try again in {secs} s"),
                )
                .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
                .into_response()
            }
        }
    }
    next.run(req).await
}

async fn dispatch(Extract(state): Extract<Arc<State>>, req: Request) -> Response {
    let (parts, _body) = req.into_parts();
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        ref m => {
            return ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                Code::Unsupported,
                format!("{m} is not supported: this registry serves a sealift store read-only"),
            )
            .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD"))
            .into_response()
        }
    };
    let query = query(&parts.uri);
    let result = match route::parse(parts.uri.path()) {
        Err(e) => Err(e),
        Ok(Route::Base) => Ok(axum::Json(serde_json::json!({})).into_response()),
        Ok(Route::Catalog) => crate::tag::catalog(&state, &query).await,
        Ok(Route::Tags(repo)) => crate::tag::list(&state, repo, &query).await,
        Ok(Route::Manifest(repo, r)) => {
            crate::manifest::get(&state, repo, r, &parts.headers, head).await
        }
        Ok(Route::Blob(repo, d)) => crate::blob::get(&state, repo, d, &parts.headers, head).await,
        Ok(Route::Referrers(repo, d)) => crate::referrer::list(&state, repo, d, &query).await,
        Ok(Route::Upload(repo)) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unsupported,
            format!("uploads to {repo} are not supported: this registry is read-only"),
        )),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The query parameters, percent-decoded; the last of a repeated name wins. A `+` stays a
/// `+`: clients write `artifactType=application/spdx+json` unescaped, and no value here
/// (media types, tags, digests, numbers) can hold a space, so reading `+` as a space the
/// way HTML forms do would only turn such values into ones matching nothing.
pub fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The `ETag` of a digest.
pub fn etag(d: &sealift_oci::Digest) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{d}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// `Docker-Content-Digest` and `ETag` for content named by `d`.
pub fn with_digest(
    b: axum::http::response::Builder,
    d: &sealift_oci::Digest,
) -> axum::http::response::Builder {
    b.header("docker-content-digest", d.to_string())
        .header(header::ETAG, etag(d))
}

/// Whether `If-None-Match` names this ETag (or `*`).
pub fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let want = etag.to_str().unwrap_or("");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == want
        })
}

#[cfg(test)]
mod tests {
    use super::query;

    #[test]
    fn plus_is_a_plus_and_escapes_decode() {
        for uri in [
            "/x?artifactType=application/spdx+json",
            "/x?artifactType=application%2Fspdx%2Bjson",
            "/x?n=1&artifactType=application/spdx%2bjson&",
        ] {
            let q = query(&uri.parse().unwrap());
            assert_eq!(q["artifactType"], "application/spdx+json", "{uri}");
        }
        let q = query(&"/x?last=a%3Ab&n=2&n=3&flag".parse().unwrap());
        assert_eq!((q["last"].as_str(), q["n"].as_str()), ("a:b", "3"));
        assert_eq!(q["flag"], "");
        assert!(query(&"/x".parse().unwrap()).is_empty());
    }
}
