//! `Link` pagination, shared by the tag list, the catalog and the referrers API: reading a
//! `rel="next"` target, and following pages with a bound on their number and size and a
//! check that they never loop.

use std::collections::HashSet;

use reqwest::header::LINK;
use reqwest::{Method, StatusCode};
use url::Url;

use crate::auth::challenge::Scope;
use crate::client::Registry;
use crate::error::RegistryError;
use crate::http::{redact, Req};

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

impl Registry {
    /// Every item of a paginated listing starting at `url` (`n` = the configured page
    /// size), each page's body turned into items by `parse`.
    pub(crate) async fn pages(
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
