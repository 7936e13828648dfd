//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, paginated with `n` and `last` and
//! an RFC 5988 `Link` to the next page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sealift_oci::Repo;

use crate::error::{ApiError, Code};
use crate::state::State;

/// The `n` query parameter: how many entries a page may hold.
pub fn page_size(query: &HashMap<String, String>) -> Result<Option<usize>, ApiError> {
    query
        .get("n")
        .map(|v| {
            v.parse::<usize>().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    Code::Unsupported,
                    format!("n={v:?} is not a number of entries"),
                )
            })
        })
        .transpose()
}

/// One page of a sorted list: the items after `last`, at most `n`, and whether more follow.
fn page(
    items: Vec<String>,
    query: &HashMap<String, String>,
) -> Result<(Vec<String>, Option<usize>), ApiError> {
    let n = page_size(query)?;
    let after: Vec<String> = match query.get("last") {
        Some(last) => items.into_iter().filter(|i| i > last).collect(),
        None => items,
    };
    match n {
        Some(n) if after.len() > n => Ok((after.into_iter().take(n).collect(), Some(n))),
        _ => Ok((after, None)),
    }
}

/// The response, with `Link: <path?last=…&n=…>; rel="next"` when the page is full and more
/// follow.
fn respond(body: serde_json::Value, path: &str, items: &[String], more: Option<usize>) -> Response {
    let mut resp = axum::Json(body).into_response();
    if let (Some(n), Some(last)) = (more, items.last()) {
        let link = format!("<{path}?last={}&n={n}>; rel=\"next\"", escape(last));
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

/// Tags and repository names are ASCII from a small set; only `:` (in a registry host
/// part of a repository name) needs escaping in a query.
fn escape(s: &str) -> String {
    s.replace(':', "%3A")
}

/// The tags of `repo`.
pub async fn list(
    state: &Arc<State>,
    repo: Repo,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let r = repo.clone();
    let tags: Vec<String> = state
        .blocking(move |s| {
            Ok(s.store
                .tags()?
                .into_iter()
                .filter(|t| t.repo == r)
                .map(|t| t.tag.as_str().to_string())
                .collect())
        })
        .await?;
    if tags.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            Code::NameUnknown,
            format!("repository {repo} is not in the store (no tags)"),
        ));
    }
    let (tags, more) = page(tags, query)?;
    let body = serde_json::json!({ "name": repo.as_str(), "tags": tags });
    Ok(respond(body, &format!("/v2/{repo}/tags/list"), &tags, more))
}

/// Every repository with at least one tag.
pub async fn catalog(
    state: &Arc<State>,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let mut repos: Vec<String> = state
        .blocking(|s| {
            Ok(s.store
                .tags()?
                .into_iter()
                .map(|t| t.repo.as_str().to_string())
                .collect())
        })
        .await?;
    repos.sort();
    repos.dedup();
    let (repos, more) = page(repos, query)?;
    let body = serde_json::json!({ "repositories": repos });
    Ok(respond(body, "/v2/_catalog", &repos, more))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn items(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i:02}")).collect()
    }

    #[test]
    fn pages() {
        assert_eq!(page(items(3), &q(&[])).unwrap(), (items(3), None));
        let (p, more) = page(items(5), &q(&[("n", "2")])).unwrap();
        assert_eq!((p, more), (vec!["t00".into(), "t01".into()], Some(2)));
        let (p, more) = page(items(5), &q(&[("n", "2"), ("last", "t03")])).unwrap();
        assert_eq!((p, more), (vec!["t04".into()], None));
        // Exactly n left: no next page.
        let (p, more) = page(items(4), &q(&[("n", "2"), ("last", "t01")])).unwrap();
        assert_eq!((p, more), (vec!["t02".into(), "t03".into()], None));
        let (p, _) = page(items(4), &q(&[("n", "0")])).unwrap();
        assert!(p.is_empty());
        let e = page(items(4), &q(&[("n", "-1")])).unwrap_err();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::BAD_REQUEST, Code::Unsupported)
        );
    }
}
