//! `GET /v2/<name>/referrers/<digest>` (OCI distribution 1.1): an image index of the
//! manifests whose `subject` is the digest, from the store's referrer index.
//!
//! A referrer is listed under `<name>` when `<name>` reaches the referrer itself, whether
//! or not the subject is in the store: an artifact tagged in the repository whose subject
//! was never pulled is still a referrer of that digest (OCI 1.1). A repository still
//! serves only what its tags reach. The answer is always 200, an empty index for a
//! repository without tags or a subject nobody refers to, as the spec requires of a
//! registry with the referrers API. Pages are sorted by digest, at most [`MAX_PAGE`]
//! entries (fewer with `n`) and [`MAX_PAGE_BYTES`] of descriptors each, with a `Link` to
//! the next page as tags have.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, Repo};

use crate::error::ApiError;
use crate::state::State;

/// Most referrers in one page.
pub const MAX_PAGE: usize = 1000;
/// Most bytes of descriptors in one page (annotations can be large). A page always holds
/// at least one.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// One page of the referrers of `subject` within `repo`, optionally of one artifact type.
pub async fn list(
    state: &Arc<State>,
    repo: Repo,
    subject: Digest,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let filter = query.get("artifactType").cloned();
    let n = crate::tag::page_size(query)?
        .unwrap_or(MAX_PAGE)
        .min(MAX_PAGE);
    let last = query.get("last").cloned();
    let (f, r, s) = (filter.clone(), repo.clone(), subject.clone());
    let (manifests, more) = state
        .blocking(move |st| page(st, &r, &s, f.as_deref(), last.as_deref(), n))
        .await?;
    let next = match (more, manifests.last()) {
        (true, Some(last)) => {
            let mut link = format!("</v2/{repo}/referrers/{subject}?n={n}&last={}", last.digest);
            if let Some(t) = &filter {
                link.push_str("&artifactType=");
                link.extend(utf8_percent_encode(t, NON_ALPHANUMERIC));
            }
            link.push_str(">; rel=\"next\"");
            HeaderValue::from_str(&link).ok()
        }
        _ => None,
    };
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
    if let Some(link) = next {
        h.insert(header::LINK, link);
    }
    Ok(resp)
}

/// One descriptor per referrer: media type, digest and size from its record, artifact type
/// and annotations from its bytes. Those after `last` (by digest), at most `n` and
/// [`MAX_PAGE_BYTES`]; and whether more follow.
fn page(
    s: &State,
    repo: &Repo,
    subject: &Digest,
    artifact_type: Option<&str>,
    last: Option<&str>,
    n: usize,
) -> Result<(Vec<Descriptor>, bool), ApiError> {
    let mut referrers: Vec<(String, Digest)> = s
        .store
        .referrers(subject)?
        .into_iter()
        .map(|d| (d.to_string(), d))
        .filter(|(k, _)| last.is_none_or(|l| k.as_str() > l))
        .collect();
    referrers.sort();
    let mut out = Vec::new();
    let mut bytes = 0;
    for (_, d) in referrers {
        // The rule of the whole registry: only what the repository reaches.
        if !s.reach.contains(&s.store, repo, &d)? {
            continue;
        }
        let Some(rec) = s.store.record(&d)? else {
            continue;
        };
        if !rec.manifest {
            continue;
        }
        if artifact_type.is_some_and(|t| rec.artifact_type.as_deref() != Some(t)) {
            continue;
        }
        if out.len() >= n {
            return Ok((out, true));
        }
        let view = match s.store.manifest(&d) {
            Ok((_, v)) => v,
            Err(sealift_store::Error::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut desc = Descriptor::new(rec.media_type, d, rec.size);
        desc.artifact_type = rec.artifact_type;
        desc.annotations = view.annotations;
        let size = serde_json::to_vec(&desc).map_or(0, |v| v.len());
        if !out.is_empty() && bytes + size > MAX_PAGE_BYTES {
            return Ok((out, true));
        }
        bytes += size;
        out.push(desc);
    }
    Ok((out, false))
}
