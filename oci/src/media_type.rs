//! Media types the store knows, and what each one is.
//!
//! Unknown media types are carried, never rejected: they classify as [`Kind::Blob`] (or as an
//! unknown manifest when the bytes parse as one), so artifacts of new kinds still sync.

pub use crate::compression::Compression;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The OCI empty descriptor's media type (artifacts with no config).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// Uncompressed OCI layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// zstd OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// Non-distributable uncompressed OCI layer (deprecated by the spec, still seen).
pub const OCI_LAYER_ND_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
/// Non-distributable gzip OCI layer.
pub const OCI_LAYER_ND_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// Non-distributable zstd OCI layer.
pub const OCI_LAYER_ND_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
/// Pre-release OCI index name, accepted with a warning.
pub const OCI_INDEX_PRERELEASE: &str = "application/vnd.oci.image.manifest.list.v1+json";
/// Docker manifest list v2.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest v2 schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker container config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker uncompressed layer (rare, but valid).
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema1 signed manifest: recognised only to refuse it by name.
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Annotation naming a ref in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// buildx attestation annotation: which manifest the attestation describes.
pub const ANNOTATION_DOCKER_REF_DIGEST: &str = "vnd.docker.reference.digest";
/// buildx attestation annotation: the kind of reference (`attestation-manifest`).
pub const ANNOTATION_DOCKER_REF_TYPE: &str = "vnd.docker.reference.type";

/// What a media type is, as far as the graph is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A list of manifests (OCI index, Docker manifest list).
    Index,
    /// A single manifest (OCI or Docker schema2).
    Manifest,
    /// An image config.
    Config,
    /// A filesystem layer.
    Layer,
    /// Anything else: artifact blobs, unknown types, the empty descriptor.
    Blob,
}

/// Classify a media type.
pub fn kind(media_type: &str) -> Kind {
    match media_type {
        OCI_INDEX | OCI_INDEX_PRERELEASE | DOCKER_MANIFEST_LIST => Kind::Index,
        OCI_MANIFEST | DOCKER_MANIFEST => Kind::Manifest,
        OCI_CONFIG | DOCKER_CONFIG => Kind::Config,
        _ if layer_compression(media_type).is_some() => Kind::Layer,
        _ => Kind::Blob,
    }
}

/// Whether a media type names a manifest or index (something the graph parses).
pub fn is_manifest(media_type: &str) -> bool {
    matches!(kind(media_type), Kind::Index | Kind::Manifest)
}

/// The compression of a layer media type, or `None` when it is not a known layer type.
pub fn layer_compression(media_type: &str) -> Option<Compression> {
    Some(match media_type {
        OCI_LAYER_TAR | OCI_LAYER_ND_TAR | DOCKER_LAYER_TAR => Compression::None,
        OCI_LAYER_GZIP | OCI_LAYER_ND_GZIP | DOCKER_LAYER_GZIP | DOCKER_LAYER_FOREIGN => {
            Compression::Gzip
        }
        OCI_LAYER_ZSTD | OCI_LAYER_ND_ZSTD => Compression::Zstd,
        _ => return None,
    })
}

/// Whether a layer media type is a filesystem layer (a tar changeset, with a DiffID in the
/// config). In-toto statements, artifact blobs and unknown types are not.
pub fn is_filesystem_layer(media_type: &str) -> bool {
    layer_compression(media_type).is_some()
}

/// Non-distributable and foreign layers: their bytes may legitimately be absent.
pub fn is_non_distributable(media_type: &str) -> bool {
    matches!(
        media_type,
        OCI_LAYER_ND_TAR | OCI_LAYER_ND_GZIP | OCI_LAYER_ND_ZSTD | DOCKER_LAYER_FOREIGN
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_without_mixing_docker_and_oci() {
        assert_eq!(kind(OCI_INDEX), Kind::Index);
        assert_eq!(kind(DOCKER_MANIFEST_LIST), Kind::Index);
        assert_eq!(kind(OCI_INDEX_PRERELEASE), Kind::Index);
        assert_eq!(kind(DOCKER_MANIFEST), Kind::Manifest);
        assert_eq!(kind(DOCKER_CONFIG), Kind::Config);
        assert_eq!(kind(DOCKER_LAYER_FOREIGN), Kind::Layer);
        assert_eq!(kind(OCI_EMPTY), Kind::Blob);
        assert_eq!(kind("application/spdx+json"), Kind::Blob);
        assert_eq!(layer_compression(OCI_LAYER_ZSTD), Some(Compression::Zstd));
        assert_eq!(
            layer_compression(DOCKER_LAYER_GZIP),
            Some(Compression::Gzip)
        );
        assert!(is_non_distributable(DOCKER_LAYER_FOREIGN));
        assert!(is_filesystem_layer(OCI_LAYER_GZIP));
        assert!(!is_filesystem_layer("application/vnd.in-toto+json"));
        assert!(!is_non_distributable(DOCKER_LAYER_GZIP));
    }
}
