//! Finding signatures in what a source holds: cosign's signature manifests
//! (`sha256-<hex>.sig` tags) and Sigstore bundles attached as OCI 1.1 referrers. Pure
//! parsing; the caller fetches the layers named here, each at most
//! [`MAX_SIGNATURE_LAYER`] bytes.

use sealift_oci::{Descriptor, Digest, ManifestView};

/// cosign's payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a simple-signing layer's base64 signature.
pub const ANNOTATION_SIGNATURE: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding a keyless simple-signing layer's Fulcio certificate.
pub const ANNOTATION_CERTIFICATE: &str = "dev.sigstore.cosign/certificate";
/// cosign's artifactType for signatures pushed as OCI 1.1 referrers.
pub const COSIGN_SIG_ARTIFACT: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

/// A simple-signing payload is a few hundred bytes and a bundle a few KiB (its certificate
/// chain and inclusion proof); anything over 4 MiB is refused before it is fetched.
pub const MAX_SIGNATURE_LAYER: u64 = 4 * 1024 * 1024;
/// cosign appends a layer per signature to one manifest; more than this is not a
/// signature manifest sealift will read through.
pub const MAX_SIGNATURE_LAYERS: usize = 64;

/// Whether a media type (or artifactType) is a Sigstore bundle: the v0.1–v0.3 forms
/// `application/vnd.dev.sigstore.bundle+json;version=0.x` and
/// `application/vnd.dev.sigstore.bundle.v0.3+json`.
pub fn is_bundle_type(media_type: &str) -> bool {
    let base = media_type.split(';').next().unwrap_or("").trim();
    base == "application/vnd.dev.sigstore.bundle+json"
        || (base.starts_with("application/vnd.dev.sigstore.bundle.v") && base.ends_with("+json"))
}

/// Whether a referrer with this artifactType may carry a signature (so its manifest is
/// worth fetching).
pub fn is_signature_artifact(artifact_type: Option<&str>) -> bool {
    match artifact_type {
        Some(t) => is_bundle_type(t) || t == COSIGN_SIG_ARTIFACT || t == SIMPLE_SIGNING,
        None => false,
    }
}

/// The suffixes of cosign's tags for an image: its signatures, attestations and SBOM.
pub const COSIGN_TAG_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// cosign's tag for `image` with `suffix` (one of [`COSIGN_TAG_SUFFIXES`]):
/// `sha256-<hex>.sig`, `.att` or `.sbom`.
pub fn cosign_tag_with(image: &Digest, suffix: &str) -> String {
    format!("{}-{}.{suffix}", image.algorithm().as_str(), image.hex())
}

/// The cosign tag that holds `image`'s signatures.
pub fn cosign_tag(image: &Digest) -> String {
    cosign_tag_with(image, "sig")
}

/// The image a cosign tag (`sha256-<hex>.sig`, `.att` or `.sbom`: its signatures,
/// attestations or SBOM) belongs to; `None` for any other tag.
pub fn cosign_tag_subject(tag: &str) -> Option<Digest> {
    let stem = COSIGN_TAG_SUFFIXES
        .iter()
        .find_map(|s| tag.strip_suffix(s).and_then(|t| t.strip_suffix('.')))?;
    let (alg, hex) = stem.split_once('-')?;
    format!("{alg}:{hex}").parse().ok()
}

/// What a signature layer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Form {
    /// A simple-signing payload; its base64 signature from the layer's annotation.
    SimpleSigning {
        /// The base64 signature (absent: the layer is unsigned).
        signature: Option<String>,
        /// A Fulcio certificate rides along (cosign's legacy keyless form).
        certificate: bool,
    },
    /// A Sigstore bundle (JSON).
    Bundle,
}

/// A layer of a signature manifest that holds a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureLayer {
    /// The layer's descriptor (fetch at most [`MAX_SIGNATURE_LAYER`] bytes).
    pub descriptor: Descriptor,
    /// What it holds.
    pub form: Form,
}

/// The signature layers of a signature manifest, at most [`MAX_SIGNATURE_LAYERS`]; bytes
/// that are not a manifest hold none.
pub fn signature_layers(manifest: &[u8]) -> Vec<SignatureLayer> {
    let Ok(view) = ManifestView::parse(manifest, None) else {
        return Vec::new();
    };
    view.layers
        .iter()
        .filter_map(|l| {
            let form = if l.media_type == SIMPLE_SIGNING {
                Form::SimpleSigning {
                    signature: l.annotations.get(ANNOTATION_SIGNATURE).cloned(),
                    certificate: l.annotations.contains_key(ANNOTATION_CERTIFICATE),
                }
            } else if is_bundle_type(&l.media_type) {
                Form::Bundle
            } else {
                return None;
            };
            Some(SignatureLayer {
                descriptor: l.clone(),
                form,
            })
        })
        .take(MAX_SIGNATURE_LAYERS)
        .collect()
}

/// A signature layer with its bytes, as fetched by the caller.
#[derive(Clone, Debug)]
pub struct Found {
    /// Where it was found, for messages and the verdict (`sha256-<hex>.sig`, or
    /// `referrer sha256:…`).
    pub at: String,
    /// The layer.
    pub layer: SignatureLayer,
    /// Its bytes (checked against the descriptor by the caller's transport).
    pub bytes: Vec<u8>,
}
