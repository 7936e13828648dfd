//! Referrers: the OCI 1.1 referrers API, else the `<alg>-<hex>` tag schema.

use std::collections::HashSet;

use reqwest::header::{ACCEPT, LINK};
use reqwest::{Method, StatusCode};
use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest};
use url::Url;

use crate::auth::challenge::Scope;
use crate::client::Registry;
use crate::error::RegistryError;
use crate::http::{redact, Req};
use crate::name::check_repo;
use crate::page::parse_link_next;

/// The tag the OCI referrers tag schema uses for `subject`: `<alg>-<hex>`, the algorithm
/// truncated to 32 characters and the hex to 64 (so sha512 fits in a tag).
pub fn referrers_tag(subject: &Digest) -> String {
    let alg: String = subject.algorithm().as_str().chars().take(32).collect();
    let hex: String = subject.hex().chars().take(64).collect();
    format!("{alg}-{hex}")
}

#[derive(serde::Deserialize)]
struct IndexDoc {
    manifests: Vec<Descriptor>,
}

/// The descriptors of a referrers index, filtered by artifact type.
fn filter(bytes: &[u8], artifact_type: Option<&str>) -> serde_json::Result<Vec<Descriptor>> {
    let doc: IndexDoc = serde_json::from_slice(bytes)?;
    Ok(doc
        .manifests
        .into_iter()
        .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
        .collect())
}

/// The most referrers pages one listing reads: `sealift serve` sends up to 1000 per page,
/// so this allows a million; past it the registry is taken to be looping or hostile.
pub const MAX_REFERRER_PAGES: usize = 1000;

/// The most referrers one listing returns (after filtering): a bound on memory whatever
/// the registry sends.
pub const MAX_REFERRERS: usize = 100_000;

/// Where the `Link` header of a referrers page leads next: `None` on the last page. The
/// target must be on the registry's own origin (credentials go with every page, and a
/// listing has no business on another host) and not a page already read (a loop).
fn next_page(
    origin: &Url,
    page: &Url,
    link: Option<&str>,
    seen: &mut HashSet<String>,
) -> Result<Option<Url>, RegistryError> {
    let Some(next) = link.and_then(parse_link_next) else {
        return Ok(None);
    };
    let bad = |detail: String| RegistryError::BadResponse {
        url: redact(page),
        detail,
    };
    let url = page
        .join(&next)
        .map_err(|e| bad(format!("unparsable referrers Link target: {e}")))?;
    if url.origin() != origin.origin() {
        return Err(bad(format!(
            "referrers Link leads to another origin ({}); not followed",
            url.origin().ascii_serialization()
        )));
    }
    if !seen.insert(url.to_string()) {
        return Err(bad(
            "referrers pagination loops back to a page already read".into(),
        ));
    }
    Ok(Some(url))
}

impl Registry {
    /// The manifests that refer to `subject` in `repo`, optionally only those of one
    /// artifact type. Uses the referrers API, following its `Link` pages (same origin, at
    /// most [`MAX_REFERRER_PAGES`] pages and [`MAX_REFERRERS`] entries, each page at most
    /// `MAX_MANIFEST_SIZE`); when the registry does not have the API (404 on the first
    /// page), reads the `sha256-<hex>` tag's index instead; empty when neither exists.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        check_repo(repo)?;
        let first = {
            let mut url = self.url(&format!("v2/{repo}/referrers/{subject}"))?;
            if let Some(t) = artifact_type {
                url.query_pairs_mut().append_pair("artifactType", t);
            }
            url
        };
        let mut seen = HashSet::from([first.to_string()]);
        let mut url = first.clone();
        let mut out = Vec::new();
        for page in 0..MAX_REFERRER_PAGES {
            let req = Req::new(Method::GET, url.clone(), vec![Scope::pull(repo)])
                .header(ACCEPT, mt::OCI_INDEX);
            let (meta, body) = match self.send_read(&req, MAX_MANIFEST_SIZE as u64).await? {
                Ok(ok) => ok,
                Err(resp) if page == 0 && resp.status() == StatusCode::NOT_FOUND => {
                    tracing::debug!(repo, %subject, "no referrers API; trying the tag schema");
                    return self.referrers_by_tag(repo, subject, artifact_type).await;
                }
                Err(resp) => return Err(resp.into_error(self.timeout()).await),
            };
            let body = body.ok_or_else(|| RegistryError::TooLarge {
                what: format!("referrers page {}", redact(&meta.url)),
                limit: MAX_MANIFEST_SIZE as u64,
                size: MAX_MANIFEST_SIZE as u64 + 1,
            })?;
            // Filter here as well: registries that ignore the filter say so only by the
            // absence of OCI-Filters-Applied.
            let items = filter(&body, artifact_type).map_err(|e| RegistryError::BadResponse {
                url: redact(&meta.url),
                detail: format!("referrers response is not an index: {e}"),
            })?;
            out.extend(items);
            if out.len() > MAX_REFERRERS {
                return Err(RegistryError::BadResponse {
                    url: redact(&first),
                    detail: format!("more than {MAX_REFERRERS} referrers; not listing them all"),
                });
            }
            // Pages go over plain HTTP once a loopback registry has refused TLS (known only
            // after the first request), so the origin is the one requests actually reach.
            let origin = self.on_origin(&first);
            seen.insert(self.on_origin(&url).to_string());
            match next_page(&origin, &meta.url, meta.header(LINK), &mut seen)? {
                Some(next) => url = next,
                None => return Ok(out),
            }
        }
        Err(RegistryError::BadResponse {
            url: redact(&first),
            detail: format!("referrers run past {MAX_REFERRER_PAGES} pages; not listing them all"),
        })
    }

    /// The referrers tag schema: the index tagged `<alg>-<hex>`, filtered.
    async fn referrers_by_tag(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        let tag = referrers_tag(subject);
        let m = match self.manifest_get(repo, &tag).await {
            Ok(m) => m,
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        filter(&m.bytes, artifact_type).map_err(|e| RegistryError::BadResponse {
            url: format!("{}/{repo}:{tag}", self.host()),
            detail: format!("referrers tag is not an index: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealift_oci::Algorithm;

    #[test]
    fn tag_schema() {
        let d = Digest::sha256(b"x");
        assert_eq!(referrers_tag(&d), format!("sha256-{}", d.hex()));
        let d = Digest::of(Algorithm::Sha512, b"x");
        let t = referrers_tag(&d);
        assert_eq!(t.len(), "sha512-".len() + 64);
        assert!(t.len() <= 128);
    }

    #[test]
    fn filtering() {
        let d = Digest::sha256(b"a");
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{d}","size":1,"artifactType":"application/spdx+json"}},{{"mediaType":"{}","digest":"{d}","size":2,"artifactType":"application/vnd.dev.cosign"}}]}}"#,
            mt::OCI_INDEX,
            mt::OCI_MANIFEST,
            mt::OCI_MANIFEST
        );
        assert_eq!(filter(idx.as_bytes(), None).unwrap().len(), 2);
        let only = filter(idx.as_bytes(), Some("application/spdx+json")).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].size, 1);
        assert!(filter(b"[]", None).is_err());
        assert!(filter(br#"{"schemaVersion":2}"#, None).is_err());
    }

    #[test]
    fn links_stay_on_origin_and_never_loop() {
        let origin = Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        let first = origin.join("r/referrers/sha256:ab").unwrap();
        let mut seen = HashSet::from([first.to_string()]);
        let link = |s: &str| format!("<{s}>; rel=\"next\"");
        assert!(next_page(&origin, &first, None, &mut seen)
            .unwrap()
            .is_none());
        let two = next_page(
            &origin,
            &first,
            Some(&link("/v2/r/referrers/sha256:ab?last=x")),
            &mut seen,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            two.as_str(),
            "http://127.0.0.1:5000/v2/r/referrers/sha256:ab?last=x"
        );
        // Back to the first page, or to the same page again: a loop.
        for again in [
            "/v2/r/referrers/sha256:ab",
            "/v2/r/referrers/sha256:ab?last=x",
        ] {
            let e = next_page(&origin, &two, Some(&link(again)), &mut seen).unwrap_err();
            assert!(e.to_string().contains("loops back"), "{e}");
        }
        for other in [
            "http://127.0.0.1:5001/v2/r/referrers/sha256:ab?last=y",
            "https://127.0.0.1:5000/v2/r/referrers/sha256:ab?last=y",
            "http://evil.example/v2/r/referrers/sha256:ab?last=y",
        ] {
            let e = next_page(&origin, &two, Some(&link(other)), &mut seen).unwrap_err();
            assert!(e.to_string().contains("another origin"), "{e}");
        }
    }
}
