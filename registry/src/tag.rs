//! Listing: tags of a repository and the registry's catalog, following `Link` pagination.

use std::collections::HashSet;

use reqwest::header::LINK;
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::Scope;
use super::client::{check_repo, redact, Registry, Req};
use super::error::RegistryError;

/// The most pages one listing follows: a registry that keeps sending `next` forever must
/// not hang a sync.
const MAX_PAGES: usize = 100_000;

/// The largest page body read.
const PAGE_LIMIT: u64 = 16 * 1024 * 1024;

/// The target of the `rel="next"` link in a `Link` header value, if any.
pub fn parse_link_next(value: &str) -> Option<String> {
    // Links are `<url>; param=value; ...`, separated by commas (commas may appear inside
    // the <url>, so split on `<` boundaries instead).
    let mut rest = value;
    while let Some(open) = rest.find('<') {
        let after = rest.get(open + 1..)?;
        let close = after.find('>')?;
        let target = after.get(..close)?;
        let tail = after.get(close + 1..)?;
        let params_end = tail.find('<').unwrap_or(tail.len());
        let params = tail.get(..params_end)?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            let Some((k, v)) = p.split_once('=') else {
                return false;
            };
            k.trim().eq_ignore_ascii_case("rel")
                && v.trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = tail.get(params_end..)?;
    }
    None
}

#[derive(serde::Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl Registry {
    /// Every tag of `repo`, in the registry's order, following pagination
    /// (`n` = the configured page size). A repository that does not exist is `NotFound`.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        check_repo(repo)?;
        let first = self.url(&format!("v2/{repo}/tags/list"))?;
        let pages = self
            .pages(first, vec![Scope::pull(repo)], |bytes| {
                serde_json::from_slice::<TagPage>(bytes).map(|p| p.tags.unwrap_or_default())
            })
            .await;
        match pages {
            Err(RegistryError::Http { status: 404, .. }) => Err(self.not_found(repo, "tags")),
            other => other,
        }
    }

    /// Every repository in the registry's catalog, following pagination. Many registries
    /// restrict or disable the catalog; their refusal comes back as the error.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        let first = self.url("v2/_catalog")?;
        self.pages(first, vec![Scope::catalog()], |bytes| {
            serde_json::from_slice::<CatalogPage>(bytes).map(|p| p.repositories.unwrap_or_default())
        })
        .await
    }

    async fn pages(
        &self,
        mut url: Url,
        scopes: Vec<Scope>,
        parse: impl Fn(&[u8]) -> serde_json::Result<Vec<String>>,
    ) -> Result<Vec<String>, RegistryError> {
        url.query_pairs_mut()
            .append_pair("n", &self.config().page_size.max(1).to_string());
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..MAX_PAGES {
            if !seen.insert(url.to_string()) {
                return Err(RegistryError::BadResponse {
                    url: redact(&url),
                    detail: "pagination loops back to a page already read".into(),
                });
            }
            let req = Req::new(Method::GET, url.clone(), scopes.clone());
            let (meta, body) = match self.send_read(&req, PAGE_LIMIT).await? {
                Ok(ok) => ok,
                Err(resp) => return Err(resp.into_error(self.timeout()).await),
            };
            let body = body.ok_or_else(|| RegistryError::TooLarge {
                what: format!("listing page {}", redact(&meta.url)),
                limit: PAGE_LIMIT,
                size: PAGE_LIMIT + 1,
            })?;
            if meta.status == StatusCode::NO_CONTENT {
                break;
            }
            let items = parse(&body).map_err(|e| RegistryError::BadResponse {
                url: redact(&meta.url),
                detail: format!("listing is not the expected JSON: {e}"),
            })?;
            out.extend(items);
            let Some(next) = meta.header(LINK).and_then(parse_link_next) else {
                return Ok(out);
            };
            url = meta
                .url
                .join(&next)
                .map_err(|e| RegistryError::BadResponse {
                    url: redact(&meta.url),
                    detail: format!("unparsable Link target: {e}"),
                })?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_headers() {
        assert_eq!(
            parse_link_next(r#"</v2/r/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/r/tags/list?last=b&n=2")
        );
        assert_eq!(
            parse_link_next(r#"<https://x/a?p=1,2>; rel="prev", <https://x/b>; rel=next"#)
                .as_deref(),
            Some("https://x/b")
        );
        assert_eq!(parse_link_next(r#"<https://x/a>; rel="prev""#), None);
        assert_eq!(parse_link_next(""), None);
        assert_eq!(parse_link_next("<unterminated; rel=next"), None);
        assert_eq!(
            parse_link_next(r#"<a>; title="x"; rel="nofollow next""#).as_deref(),
            Some("a")
        );
    }
}
