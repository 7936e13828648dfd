//! `GET /v2/<name>/referrers/<digest>` (OCI distribution 1.1): an image index of the
//! manifests whose `subject` is the digest, from the store's referrer index.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sealift_store::media_type as mt;
use sealift_store::{Descriptor, Digest, Repo};

use crate::app::State;
use crate::error::{ApiError, Code};

/// The referrers of `subject` within `repo`, optionally of one artifact type.
pub async fn list(
    state: &Arc<State>,
    repo: Repo,
    subject: Digest,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let filter = query.get("artifactType").cloned();
    let f = filter.clone();
    let manifests = state
        .blocking(move |s| descriptors(s, &repo, &subject, f.as_deref()))
        .await?;
    let body = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt::OCI_INDEX,
        "manifests": manifests,
    });
    let mut resp = axum::Json(body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mt::OCI_INDEX),
    );
    if filter.is_some() {
        h.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(resp)
}

/// One descriptor per referrer: media type, digest and size from its record, artifact type
/// and annotations from its bytes. Sorted by digest, so the list is stable.
fn descriptors(
    s: &State,
    repo: &Repo,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Descriptor>, ApiError> {
    if !s.repo_exists(repo)? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            format!("repository {repo} is not in the store (no tags)"),
        ));
    }
    // A subject the repository does not reach has no referrers there (an empty list, as
    // the spec asks for an unknown subject).
    if !s.reach.contains(&s.store, repo, subject)? {
        return Ok(Vec::new());
    }
    let mut referrers = s.store.referrers(subject)?;
    referrers.sort();
    let mut out = Vec::new();
    for d in referrers {
        let Some(rec) = s.store.record(&d)? else {
            continue;
        };
        if !rec.manifest {
            continue;
        }
        if artifact_type.is_some_and(|t| rec.artifact_type.as_deref() != Some(t)) {
            continue;
        }
        let view = match s.store.manifest(&d) {
            Ok((_, v)) => v,
            Err(sealift_store::Error::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut desc = Descriptor::new(rec.media_type, d, rec.size);
        desc.artifact_type = rec.artifact_type;
        desc.annotations = view.annotations;
        out.push(desc);
    }
    Ok(out)
}
