//! Read-only views over manifest bytes.
//!
//! The bytes are the truth: a [`ManifestView`] is parsed from them to find children and
//! platforms, and is never serialised back. Writing a parsed struct would reorder keys and
//! drop unknown fields, which changes the digest.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::media_type::{self as mt, Kind};
use crate::platform::Platform;

/// The largest manifest the store accepts, as distribution and containerd do.
pub const MAX_MANIFEST_SIZE: usize = 4 * 1024 * 1024;

/// How many manifests deep a graph may nest (an image manifest alone is 1, an index of
/// images 2; real images nest 2 or 3). Every walk of a manifest graph (the store's, a copy's
/// plan, an import, an export) stops past it with a `TooDeep` error: a hostile chain
/// thousands deep must be an error, not a stack overflow or thousands of fetches.
pub const MAX_DEPTH: usize = 16;

/// A content descriptor, as it appears inside manifests and indexes.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target's bytes.
    pub digest: Digest,
    /// Size of the target in bytes (never negative: `u64` refuses it on parse).
    pub size: u64,
    /// Where non-distributable content can be fetched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform, in index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Artifact type, in index entries and referrers lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with just the three required fields.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The manifest a buildx attestation manifest describes, when this entry is one.
    pub fn attests(&self) -> Option<Digest> {
        if self.annotations.get(mt::ANNOTATION_DOCKER_REF_TYPE)? != "attestation-manifest" {
            return None;
        }
        self.annotations
            .get(mt::ANNOTATION_DOCKER_REF_DIGEST)?
            .parse()
            .ok()
    }

    /// `org.opencontainers.image.ref.name`, as used in layout index.json files.
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations
            .get(mt::ANNOTATION_REF_NAME)
            .map(String::as_str)
    }
}

/// The role a child plays for its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// An entry of an index.
    Manifest,
    /// The config of a manifest.
    Config,
    /// A layer (or artifact blob) of a manifest.
    Layer,
}

/// One outgoing edge of a manifest.
#[derive(Clone, Debug)]
pub struct Child<'a> {
    /// The child's descriptor.
    pub descriptor: &'a Descriptor,
    /// What the child is to the parent.
    pub role: Role,
    /// Whether the graph is broken without it. Non-distributable layers are optional.
    pub required: bool,
}

/// Whether a manifest is an index or an image manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    /// Index or manifest list.
    Index,
    /// Image (or artifact) manifest.
    Image,
}

/// A parsed, read-only view of manifest bytes.
#[derive(Clone, Debug)]
pub struct ManifestView {
    /// The media type the bytes declare, or that the caller supplied when they declare none.
    pub media_type: String,
    /// Index or image.
    pub kind: ManifestKind,
    /// Image config (image manifests only).
    pub config: Option<Descriptor>,
    /// Layers (image manifests only).
    pub layers: Vec<Descriptor>,
    /// Entries (indexes only).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to (OCI 1.1 referrers).
    pub subject: Option<Descriptor>,
    /// OCI 1.1 artifact type.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: BTreeMap<String, String>,
    /// Things worth telling the user that are not errors (pre-release media types).
    pub warnings: Vec<String>,
}

/// Why bytes are not an acceptable manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Over [`MAX_MANIFEST_SIZE`].
    #[error("manifest is {0} bytes, over the 4 MiB limit")]
    TooLarge(usize),
    /// Not JSON, or not shaped like a manifest.
    #[error("not a valid manifest: {0}")]
    Json(String),
    /// Declared media type disagrees with the one expected.
    #[error("manifest declares media type {declared} but was described as {expected}")]
    MediaTypeMismatch {
        /// In the bytes.
        declared: String,
        /// From the descriptor or Content-Type.
        expected: String,
    },
    /// Not a manifest media type at all.
    #[error("media type {0} is not a manifest or index")]
    NotAManifest(String),
    /// Docker schema 1 and other unsupported versions.
    #[error("unsupported schemaVersion {0} (only schema 2 manifests are supported)")]
    SchemaVersion(i64),
    /// A field required for this media type is missing.
    #[error("{media_type} is missing required field {field:?}")]
    MissingField {
        /// Media type being parsed.
        media_type: String,
        /// The field.
        field: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    artifact_type: Option<String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

impl ManifestView {
    /// Parse manifest bytes. `described_as` is the media type from the descriptor or
    /// Content-Type that led here, when there is one; it must agree with the bytes.
    pub fn parse(bytes: &[u8], described_as: Option<&str>) -> Result<ManifestView, ManifestError> {
        if bytes.len() > MAX_MANIFEST_SIZE {
            return Err(ManifestError::TooLarge(bytes.len()));
        }
        let raw: Raw =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        match raw.schema_version {
            Some(2) => {}
            Some(v) => return Err(ManifestError::SchemaVersion(v)),
            None => {
                return Err(ManifestError::MissingField {
                    media_type: raw
                        .media_type
                        .or(described_as.map(str::to_string))
                        .unwrap_or_else(|| "manifest".into()),
                    field: "schemaVersion",
                })
            }
        }
        let media_type = match (&raw.media_type, described_as) {
            (Some(d), Some(e)) if d != e && !equivalent(d, e) => {
                return Err(ManifestError::MediaTypeMismatch {
                    declared: d.clone(),
                    expected: e.to_string(),
                })
            }
            (Some(d), _) => d.clone(),
            (None, Some(e)) if mt::is_manifest(e) => e.to_string(),
            (None, _) if raw.manifests.is_some() => mt::OCI_INDEX.to_string(),
            (None, _) if raw.config.is_some() => mt::OCI_MANIFEST.to_string(),
            (None, Some(e)) => return Err(ManifestError::NotAManifest(e.to_string())),
            (None, None) => {
                return Err(ManifestError::Json(
                    "no mediaType, config or manifests".into(),
                ))
            }
        };
        let mut warnings = Vec::new();
        if media_type == mt::OCI_INDEX_PRERELEASE {
            warnings.push(format!(
                "{} is a pre-release OCI media type; read as {}",
                mt::OCI_INDEX_PRERELEASE,
                mt::OCI_INDEX
            ));
        }
        let missing = |field| ManifestError::MissingField {
            media_type: media_type.clone(),
            field,
        };
        let view = match mt::kind(&media_type) {
            Kind::Index => ManifestView {
                kind: ManifestKind::Index,
                manifests: raw.manifests.ok_or_else(|| missing("manifests"))?,
                config: None,
                layers: Vec::new(),
                subject: raw.subject,
                artifact_type: raw.artifact_type,
                annotations: raw.annotations,
                warnings,
                media_type,
            },
            Kind::Manifest => {
                let config = raw.config.ok_or_else(|| missing("config"))?;
                let layers = match raw.layers {
                    Some(l) => l,
                    None if media_type == mt::OCI_MANIFEST => Vec::new(),
                    None => return Err(missing("layers")),
                };
                ManifestView {
                    kind: ManifestKind::Image,
                    config: Some(config),
                    layers,
                    manifests: Vec::new(),
                    subject: raw.subject,
                    artifact_type: raw.artifact_type,
                    annotations: raw.annotations,
                    warnings,
                    media_type,
                }
            }
            _ => return Err(ManifestError::NotAManifest(media_type)),
        };
        Ok(view)
    }

    /// Outgoing edges, in document order. `subject` is not a child: it is recorded as a
    /// referrer edge the other way round, and it is optional.
    pub fn children(&self) -> Vec<Child<'_>> {
        let mut out = Vec::new();
        for d in &self.manifests {
            out.push(Child {
                descriptor: d,
                role: Role::Manifest,
                required: true,
            });
        }
        if let Some(c) = &self.config {
            out.push(Child {
                descriptor: c,
                role: Role::Config,
                required: true,
            });
        }
        for d in &self.layers {
            out.push(Child {
                descriptor: d,
                role: Role::Layer,
                required: !mt::is_non_distributable(&d.media_type),
            });
        }
        out
    }

    /// The artifact type this manifest shows in a referrers list: `artifactType`, else the
    /// config's media type (OCI 1.1 rule).
    pub fn effective_artifact_type(&self) -> Option<String> {
        self.artifact_type
            .clone()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.clone()))
    }
}

/// The pre-release OCI index type means the same as the released one.
fn equivalent(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> &str {
        if s == mt::OCI_INDEX_PRERELEASE {
            mt::OCI_INDEX
        } else {
            s
        }
    }
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn docker_schema2_children() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{D1}","size":10}},"layers":[{{"mediaType":"{}","digest":"{D2}","size":5}},{{"mediaType":"{}","digest":"{D1}","size":7,"urls":["https://example.invalid/x"]}}]}}"#,
            mt::DOCKER_MANIFEST,
            mt::DOCKER_CONFIG,
            mt::DOCKER_LAYER_GZIP,
            mt::DOCKER_LAYER_FOREIGN
        );
        let v = ManifestView::parse(m.as_bytes(), Some(mt::DOCKER_MANIFEST)).unwrap();
        assert_eq!(v.kind, ManifestKind::Image);
        let c = v.children();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].role, Role::Config);
        assert!(c[1].required);
        assert!(!c[2].required, "foreign layer is optional");
    }

    #[test]
    fn refuses_mixups_and_bad_input() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[]}}"#,
            mt::OCI_INDEX
        );
        assert!(matches!(
            ManifestView::parse(m.as_bytes(), Some(mt::DOCKER_MANIFEST_LIST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        assert!(matches!(
            ManifestView::parse(br#"{"schemaVersion":1}"#, None),
            Err(ManifestError::SchemaVersion(1))
        ));
        assert!(matches!(
            ManifestView::parse(b"{", None),
            Err(ManifestError::Json(_))
        ));
        let neg = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"a","digest":"{D1}","size":-1}},"layers":[]}}"#
        );
        assert!(ManifestView::parse(neg.as_bytes(), None).is_err());
        let big = vec![b' '; MAX_MANIFEST_SIZE + 1];
        assert!(matches!(
            ManifestView::parse(&big, None),
            Err(ManifestError::TooLarge(_))
        ));
    }

    #[test]
    fn prerelease_index_warns() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D1}","size":3,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            mt::OCI_INDEX_PRERELEASE,
            mt::OCI_MANIFEST
        );
        let v = ManifestView::parse(m.as_bytes(), Some(mt::OCI_INDEX)).unwrap();
        assert_eq!(v.kind, ManifestKind::Index);
        assert_eq!(v.warnings.len(), 1);
        assert_eq!(
            v.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/amd64"
        );
    }

    #[test]
    fn artifact_with_subject() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/spdx+json","config":{{"mediaType":"{}","digest":"{D1}","size":2}},"layers":[{{"mediaType":"application/spdx+json","digest":"{D2}","size":9}}],"subject":{{"mediaType":"{}","digest":"{D1}","size":100}}}}"#,
            mt::OCI_MANIFEST,
            mt::OCI_EMPTY,
            mt::OCI_MANIFEST
        );
        let v = ManifestView::parse(m.as_bytes(), None).unwrap();
        assert_eq!(
            v.effective_artifact_type().as_deref(),
            Some("application/spdx+json")
        );
        assert_eq!(v.subject.as_ref().unwrap().digest.to_string(), D1);
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ManifestView::parse(&bytes, None);
        }
    }
}
