//! Referrers: the OCI 1.1 referrers API, else the `<alg>-<hex>` tag schema.

use reqwest::header::ACCEPT;
use reqwest::{Method, StatusCode};
use sealift_store::manifest::MAX_MANIFEST_SIZE;
use sealift_store::media_type as mt;
use sealift_store::{Descriptor, Digest};

use super::auth::Scope;
use super::client::{check_repo, redact, Registry, Req};
use super::error::RegistryError;

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

impl Registry {
    /// The manifests that refer to `subject` in `repo`, optionally only those of one
    /// artifact type. Uses the referrers API; when the registry does not have it (404),
    /// reads the `sha256-<hex>` tag's index instead; empty when neither exists.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>, RegistryError> {
        check_repo(repo)?;
        let mut url = self.url(&format!("v2/{repo}/referrers/{subject}"))?;
        if let Some(t) = artifact_type {
            url.query_pairs_mut().append_pair("artifactType", t);
        }
        let req = Req::new(Method::GET, url, vec![Scope::pull(repo)]).header(ACCEPT, mt::OCI_INDEX);
        match self.send_read(&req, MAX_MANIFEST_SIZE as u64).await? {
            Ok((meta, Some(body))) => {
                // Filter here as well: registries that ignore the filter say so only by
                // the absence of OCI-Filters-Applied.
                return filter(&body, artifact_type).map_err(|e| RegistryError::BadResponse {
                    url: redact(&meta.url),
                    detail: format!("referrers response is not an index: {e}"),
                });
            }
            Ok((meta, None)) => {
                return Err(RegistryError::TooLarge {
                    what: format!("referrers list {}", redact(&meta.url)),
                    limit: MAX_MANIFEST_SIZE as u64,
                    size: MAX_MANIFEST_SIZE as u64 + 1,
                })
            }
            Err(resp) if resp.status() == StatusCode::NOT_FOUND => {
                tracing::debug!(repo, %subject, "no referrers API; trying the tag schema");
            }
            Err(resp) => return Err(resp.into_error(self.timeout()).await),
        }
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
    use sealift_store::Algorithm;

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
}
