//! What a conversion is asked for ([`Convert`]) and the media types of each manifest
//! format ([`Format`]): the mapping between Docker schema2 and OCI names.

use std::fmt;

use sealift_oci::media_type::{self as mt, Compression};

use crate::transport::TransportError;

/// The manifest format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Format {
    /// OCI image manifest, index and config media types.
    Oci,
    /// Docker schema2 manifest, manifest list and container config media types.
    Docker,
}

impl Format {
    /// The format a manifest media type belongs to (anything but Docker schema2 is OCI).
    pub fn of(media_type: &str) -> Format {
        match media_type {
            mt::DOCKER_MANIFEST | mt::DOCKER_MANIFEST_LIST | mt::DOCKER_CONFIG => Format::Docker,
            _ => Format::Oci,
        }
    }

    /// Image manifest media type.
    pub fn manifest(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_MANIFEST,
            Format::Docker => mt::DOCKER_MANIFEST,
        }
    }

    /// Index / manifest list media type.
    pub fn index(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_INDEX,
            Format::Docker => mt::DOCKER_MANIFEST_LIST,
        }
    }

    /// Image config media type.
    pub fn config(self) -> &'static str {
        match self {
            Format::Oci => mt::OCI_CONFIG,
            Format::Docker => mt::DOCKER_CONFIG,
        }
    }

    /// Layer media type for a compression; `None` for Docker and zstd (Docker has none).
    pub fn layer(self, compression: Compression) -> Option<&'static str> {
        Some(match (self, compression) {
            (Format::Oci, Compression::None) => mt::OCI_LAYER_TAR,
            (Format::Oci, Compression::Gzip) => mt::OCI_LAYER_GZIP,
            (Format::Oci, Compression::Zstd) => mt::OCI_LAYER_ZSTD,
            (Format::Docker, Compression::None) => mt::DOCKER_LAYER_TAR,
            (Format::Docker, Compression::Gzip) => mt::DOCKER_LAYER_GZIP,
            (Format::Docker, Compression::Zstd) => return None,
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Oci => "oci",
            Format::Docker => "docker",
        })
    }
}

/// What to convert images to during a copy. `None` fields keep what the source has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Convert {
    /// Layer compression to write (`--dest-compress`).
    pub compression: Option<Compression>,
    /// Manifest format to write (`--format`).
    pub format: Option<Format>,
}

impl Convert {
    /// Refuse combinations no manifest format can express.
    pub fn validate(&self) -> Result<(), TransportError> {
        if self.format == Some(Format::Docker) && self.compression == Some(Compression::Zstd) {
            return Err(TransportError::Unsupported(
                "--format docker cannot be combined with --dest-compress zstd: Docker schema2 \
                 has no zstd layer media type (use --format oci, or --dest-compress gzip)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether this asks for nothing.
    pub fn is_noop(&self) -> bool {
        self.compression.is_none() && self.format.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_has_no_zstd() {
        let c = Convert {
            compression: Some(Compression::Zstd),
            format: Some(Format::Docker),
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--format docker") && e.contains("--dest-compress zstd"),
            "{e}"
        );
        assert_eq!(Format::Docker.layer(Compression::Zstd), None);
        assert_eq!(
            Format::Docker.layer(Compression::None),
            Some(mt::DOCKER_LAYER_TAR)
        );
    }
}
