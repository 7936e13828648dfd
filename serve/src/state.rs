//! What every request handler shares: the state (store, reach cache, auth, counters) and
//! the response helpers for content named by a digest. Handlers and the router import it;
//! it imports none of them.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use sealift_oci::Repo;
use sealift_store::Store;

use crate::auth::Htpasswd;
use crate::error::{ApiError, Code};
use crate::reach::Reach;
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
    /// With `redirect_blobs`: the lifetime of the presigned URLs blob GETs redirect to.
    pub redirect: Option<std::time::Duration>,
}

impl State {
    /// Wrap the store.
    pub fn new(
        store: Arc<Store>,
        auth: Option<Htpasswd>,
        stats: Arc<ServeStats>,
        redirect: Option<std::time::Duration>,
    ) -> Arc<State> {
        Arc::new(State {
            store,
            reach: Reach::new(),
            auth,
            stats,
            redirect,
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
