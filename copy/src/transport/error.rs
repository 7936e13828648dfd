//! Errors of transports and copies.

/// A transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] sealift_store::Error),
    /// A layout problem.
    #[error(transparent)]
    Layout(#[from] sealift_layout::LayoutError),
    /// A registry problem.
    #[error(transparent)]
    Registry(#[from] sealift_registry::RegistryError),
    /// An I/O error while reading or writing something named.
    #[error("{what}: {source}")]
    Io {
        /// What.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The signature policy refused the image (nothing was written for it).
    #[error("{source_ref}: {refusal}")]
    Refused {
        /// The image as the user named it.
        source_ref: String,
        /// Why, per signature found.
        refusal: sealift_trust::TrustError,
    },
    /// A manifest over 4 MiB.
    #[error("{0} is over the 4 MiB manifest limit")]
    TooLarge(String),
    /// The reference does not exist at the source.
    #[error("{0} not found")]
    NotFound(String),
    /// Several images and no ref to choose one.
    #[error("{0}")]
    Ambiguous(String),
    /// A `store:` location without an open store.
    #[error("no store is open for a store: location")]
    NoStore,
    /// Something this transport cannot do.
    #[error("{0}")]
    Unsupported(String),
    /// A registry's settings could not be read (a password file or variable).
    #[error("credentials for {host}: {reason}")]
    Credentials {
        /// The registry.
        host: String,
        /// Why.
        reason: String,
    },
    /// A manifest would not parse.
    #[error("manifest {digest}: {source}")]
    Manifest {
        /// Which.
        digest: sealift_oci::Digest,
        /// Why.
        #[source]
        source: sealift_oci::manifest::ManifestError,
    },
    /// What was being done when something failed.
    #[error("{what}: {source}")]
    During {
        /// The step (which blob, which manifest, from where to where).
        what: String,
        /// The failure.
        #[source]
        source: Box<TransportError>,
    },
    /// The destination refused a platform-filtered (sparse) index because the entries left
    /// out are not there: distribution before 3.0, and so Harbor and most on-premises
    /// registries, check every entry of a pushed index.
    #[error(
        "{destination} refused the index {digest}: it requires every platform an index lists \
         to be present, and only the chosen ones were copied (registries built on distribution \
         before 3.0, such as Harbor, check this). Copy with --rewrite-index (in a sync job: \
         rewrite_index = true, or \"auto\" to rewrite only where refused) to write an index \
         of the chosen platforms only (a new digest), or copy all platforms. The registry \
         said: {refusal}"
    )]
    SparseIndexRefused {
        /// The destination.
        destination: String,
        /// The sparse index.
        digest: sealift_oci::Digest,
        /// The registry's answer, shown in the message (not as a source, which would print
        /// it twice).
        refusal: Box<TransportError>,
    },
    /// A background task died.
    #[error("internal task failed: {0}")]
    Join(String),
}

impl From<tokio::task::JoinError> for TransportError {
    fn from(e: tokio::task::JoinError) -> Self {
        TransportError::Join(e.to_string())
    }
}

impl TransportError {
    /// Say what was being done.
    pub fn during(self, what: impl Into<String>) -> TransportError {
        TransportError::During {
            what: what.into(),
            source: Box::new(self),
        }
    }

    /// The signature policy's refusal, if that is what this is (under any `During`).
    pub fn refusal(&self) -> Option<&sealift_trust::TrustError> {
        match self {
            TransportError::Refused { refusal, .. } => Some(refusal),
            TransportError::During { source, .. } => source.refusal(),
            _ => None,
        }
    }
}
