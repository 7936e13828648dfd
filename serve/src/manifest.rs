//! `GET`/`HEAD /v2/<name>/manifests/<reference>`: the exact stored bytes.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::{Digest, Repo, StoreRef};

use crate::accept;
use crate::error::{ApiError, Code};
use crate::route::Reference;
use crate::state::{etag, not_modified, with_digest, State};

/// Answer a manifest request.
pub async fn get(
    state: &Arc<State>,
    repo: Repo,
    reference: Reference,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let accept: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let (digest, media_type, size) = state
        .blocking(move |s| find(s, &repo, &reference, &accept))
        .await?;
    let tag = etag(&digest);
    let mut resp =
        with_digest(Response::builder(), &digest).header(header::CONTENT_TYPE, &media_type);
    if not_modified(headers, &tag) {
        return resp
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::store("building a response", &e));
    }
    resp = resp.header(header::CONTENT_LENGTH, size);
    let body = if head {
        Body::empty()
    } else {
        let d = digest.clone();
        let bytes = state
            .blocking(move |s| Ok(s.store.read_small(&d, MAX_MANIFEST_SIZE as u64)?))
            .await?;
        if bytes.len() as u64 != size {
            return Err(ApiError::store(
                &format!("manifest {digest}"),
                &"its file is not the recorded size (run `sealift verify`)",
            ));
        }
        Body::from(bytes)
    };
    resp.body(body)
        .map_err(|e| ApiError::store("building a response", &e))
}

/// Resolve the reference within `repo` and check the client can take the media type.
fn find(
    s: &State,
    repo: &Repo,
    reference: &Reference,
    accept: &[String],
) -> Result<(Digest, String, u64), ApiError> {
    let unknown = |what: String| {
        s.unknown(
            repo,
            ApiError::new(StatusCode::NOT_FOUND, Code::ManifestUnknown, what),
        )
    };
    let digest = match reference {
        Reference::Tag(t) => match s.store.resolve(&StoreRef::tagged(repo.clone(), t.clone())) {
            Ok(d) => d,
            Err(sealift_store::Error::UnknownRef(_)) => {
                return Err(unknown(format!("{repo}:{t} is not in the store")))
            }
            Err(e) => return Err(e.into()),
        },
        Reference::Digest(d) => {
            if !s.reach.contains(&s.store, repo, d)? {
                return Err(unknown(format!("manifest {d} is not in repository {repo}")));
            }
            d.clone()
        }
    };
    let rec = match s.store.record(&digest)? {
        Some(r) if r.manifest => r,
        Some(_) => {
            return Err(unknown(format!(
                "{digest} in {repo} is a blob, not a manifest"
            )))
        }
        None => return Err(unknown(format!("manifest {digest} is not in the store"))),
    };
    if !accept::admits(accept.iter().map(String::as_str), &rec.media_type) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::ManifestUnknown,
            format!(
                "manifest {digest} is {}, which the request's Accept header ({}) does not \
                 list; sealift serves manifests as stored and never converts them",
                rec.media_type,
                accept.join(", ")
            ),
        ));
    }
    Ok((digest, rec.media_type, rec.size))
}
