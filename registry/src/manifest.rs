//! Manifests: GET (bounded, verified), HEAD, PUT. Bytes first: what was received is what
//! is returned and hashed, never a re-serialisation.

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::media_type as mt;
use sealift_oci::{Algorithm, Digest};

use crate::auth::challenge::Scope;
use crate::client::Registry;
use crate::error::RegistryError;
use crate::http::{redact, ReadResp, Req};
use crate::name::{check_reference, check_repo};

/// The Accept header for manifests: every manifest type sealift can carry.
pub const MANIFEST_ACCEPT: &str = concat!(
    "application/vnd.oci.image.index.v1+json, ",
    "application/vnd.oci.image.manifest.v1+json, ",
    "application/vnd.docker.distribution.manifest.list.v2+json, ",
    "application/vnd.docker.distribution.manifest.v2+json"
);

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A manifest as the registry served it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The exact bytes.
    pub bytes: Vec<u8>,
    /// Media type: the Content-Type, or the bytes' own `mediaType` when the registry sent
    /// a generic one.
    pub media_type: String,
    /// The digest of the bytes (verified against the reference when it is a digest, and
    /// against `Docker-Content-Digest` when the registry sent one).
    pub digest: Digest,
}

/// What a manifest HEAD says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestHead {
    /// Digest of the manifest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// The `ETag` the registry sent, if any (kept by sync jobs with the digest).
    pub etag: Option<String>,
}

/// The media type from a Content-Type value, without parameters; `None` for the generic
/// types some registries send.
fn content_type(v: Option<&str>) -> Option<String> {
    let t = v?.split(';').next()?.trim();
    if t.is_empty()
        || matches!(
            t,
            "application/json" | "text/plain" | "application/octet-stream"
        )
    {
        return None;
    }
    Some(t.to_string())
}

/// The media type a manifest's bytes declare, or imply by their shape.
fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        config: Option<serde::de::IgnoredAny>,
    }
    let p: Probe = serde_json::from_slice(bytes).ok()?;
    p.media_type.or_else(|| {
        if p.manifests.is_some() {
            Some(mt::OCI_INDEX.to_string())
        } else if p.config.is_some() {
            Some(mt::OCI_MANIFEST.to_string())
        } else {
            None
        }
    })
}

/// The `Docker-Content-Digest` header, when present and well-formed.
fn header_digest(r: &ReadResp) -> Option<Digest> {
    let v = r.header(DOCKER_CONTENT_DIGEST)?;
    match v.trim().parse() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::debug!(value = v, error = %e, "ignoring unusable Docker-Content-Digest");
            None
        }
    }
}

/// Check `bytes` against the digest asked for and the one the registry announced; the
/// digest to report.
fn verify_manifest(
    bytes: &[u8],
    asked: Option<&Digest>,
    announced: Option<&Digest>,
) -> Result<Digest, RegistryError> {
    for expected in [asked, announced].into_iter().flatten() {
        let actual = Digest::of(expected.algorithm(), bytes);
        if &actual != expected {
            return Err(RegistryError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(asked
        .or(announced)
        .cloned()
        .unwrap_or_else(|| Digest::of(Algorithm::Sha256, bytes)))
}

impl Registry {
    fn manifest_url(&self, repo: &str, reference: &str) -> Result<url::Url, RegistryError> {
        check_repo(repo)?;
        check_reference(reference)?;
        self.url(&format!("v2/{repo}/manifests/{reference}"))
    }

    /// Fetch a manifest by tag or digest. At most [`MAX_MANIFEST_SIZE`] bytes are read;
    /// the bytes are verified against the digest asked for and `Docker-Content-Digest`.
    pub async fn manifest_get(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let req = Req::new(
            Method::GET,
            self.manifest_url(repo, reference)?,
            vec![Scope::pull(repo)],
        )
        .header(ACCEPT, MANIFEST_ACCEPT);
        let (meta, body) = match self.send_read(&req, MAX_MANIFEST_SIZE as u64).await? {
            Ok(ok) => ok,
            Err(resp) if resp.status() == StatusCode::NOT_FOUND => {
                return Err(self.not_found(repo, reference))
            }
            Err(resp) => return Err(resp.into_error(self.timeout()).await),
        };
        let bytes = body.ok_or_else(|| RegistryError::TooLarge {
            what: format!("manifest {}/{repo}:{reference}", self.host()),
            limit: MAX_MANIFEST_SIZE as u64,
            size: meta
                .header(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.parse().ok())
                .unwrap_or(MAX_MANIFEST_SIZE as u64 + 1),
        })?;
        let asked = reference.parse::<Digest>().ok();
        let digest = verify_manifest(&bytes, asked.as_ref(), header_digest(&meta).as_ref())?;
        let media_type = content_type(meta.header(CONTENT_TYPE))
            .or_else(|| sniff_media_type(&bytes))
            .ok_or_else(|| RegistryError::BadResponse {
                url: redact(&meta.url),
                detail: "manifest has no media type (neither Content-Type nor mediaType)".into(),
            })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// HEAD a manifest: its digest, size and media type, or `None` when it does not exist.
    /// Falls back to a GET when the registry does not send `Docker-Content-Digest` for a
    /// tag.
    pub async fn manifest_head(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ManifestHead>, RegistryError> {
        let req = Req::new(
            Method::HEAD,
            self.manifest_url(repo, reference)?,
            vec![Scope::pull(repo)],
        )
        .header(ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(&req).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(resp.into_error(self.timeout()).await),
        }
        let announced = resp
            .header(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.trim().parse::<Digest>().ok());
        let digest = reference.parse::<Digest>().ok().or(announced);
        let size = resp.content_length();
        let media_type = content_type(resp.header(CONTENT_TYPE));
        let etag = resp.header(reqwest::header::ETAG).map(str::to_string);
        drop(resp);
        match (digest, size, media_type) {
            (Some(digest), Some(size), Some(media_type)) => Ok(Some(ManifestHead {
                digest,
                size,
                media_type,
                etag,
            })),
            _ => {
                let m = match self.manifest_get(repo, reference).await {
                    Ok(m) => m,
                    Err(RegistryError::NotFound { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
                Ok(Some(ManifestHead {
                    digest: m.digest,
                    size: m.bytes.len() as u64,
                    media_type: m.media_type,
                    etag,
                }))
            }
        }
    }

    /// Push manifest bytes under a tag or digest; returns their digest. When `reference` is
    /// a digest the bytes must match it; when the registry answers with a different
    /// `Docker-Content-Digest` that is an error too (it changed the bytes).
    pub async fn manifest_put(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let url = self.manifest_url(repo, reference)?;
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::TooLarge {
                what: format!("manifest for {}/{repo}:{reference}", self.host()),
                limit: MAX_MANIFEST_SIZE as u64,
                size: bytes.len() as u64,
            });
        }
        let asked = reference.parse::<Digest>().ok();
        let digest = verify_manifest(bytes, asked.as_ref(), None)?;
        let req = Req::new(Method::PUT, url, vec![Scope::push(repo)])
            .header(CONTENT_TYPE, media_type)
            .body(bytes::Bytes::copy_from_slice(bytes));
        let resp = self.send(&req).await?;
        if !matches!(
            resp.status(),
            StatusCode::CREATED | StatusCode::OK | StatusCode::ACCEPTED | StatusCode::NO_CONTENT
        ) {
            return Err(resp.into_error(self.timeout()).await);
        }
        if let Some(announced) = resp
            .header(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.trim().parse::<Digest>().ok())
        {
            let ours = Digest::of(announced.algorithm(), bytes);
            if ours != announced {
                return Err(RegistryError::DigestMismatch {
                    expected: ours,
                    actual: announced,
                });
            }
        }
        Ok(digest)
    }

    pub(crate) fn not_found(&self, repo: &str, reference: &str) -> RegistryError {
        RegistryError::NotFound {
            host: self.host().to_string(),
            repo: repo.to_string(),
            reference: reference.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            content_type(Some(
                "application/vnd.oci.image.manifest.v1+json; charset=utf-8"
            )),
            Some(mt::OCI_MANIFEST.to_string())
        );
        assert_eq!(content_type(Some("application/json")), None);
        assert_eq!(content_type(None), None);
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            Some(mt::OCI_INDEX.to_string())
        );
        assert_eq!(
            sniff_media_type(br#"{"schemaVersion":2,"config":{}}"#),
            Some(mt::OCI_MANIFEST.to_string())
        );
        assert_eq!(
            sniff_media_type(
                br#"{"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            ),
            Some(mt::DOCKER_MANIFEST.to_string())
        );
        assert_eq!(sniff_media_type(b"nope"), None);
        for t in [
            mt::OCI_INDEX,
            mt::OCI_MANIFEST,
            mt::DOCKER_MANIFEST_LIST,
            mt::DOCKER_MANIFEST,
        ] {
            assert!(MANIFEST_ACCEPT.contains(t));
        }
    }

    #[test]
    fn verification() {
        let b = b"{}";
        let d = Digest::sha256(b);
        let other = Digest::sha256(b"x");
        assert_eq!(verify_manifest(b, None, None).unwrap(), d);
        assert_eq!(verify_manifest(b, Some(&d), Some(&d)).unwrap(), d);
        assert!(matches!(
            verify_manifest(b, Some(&other), None),
            Err(RegistryError::DigestMismatch { .. })
        ));
        assert!(matches!(
            verify_manifest(b, None, Some(&other)),
            Err(RegistryError::DigestMismatch { .. })
        ));
        let d512 = Digest::of(Algorithm::Sha512, b);
        assert_eq!(verify_manifest(b, Some(&d512), Some(&d)).unwrap(), d512);
    }
}
