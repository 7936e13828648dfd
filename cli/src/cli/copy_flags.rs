//! The flags of the commands that move images (`copy`, `pull`, `push`) and the signature
//! policy flags they share with `import`.

use std::path::PathBuf;

use clap::Args;
use sealift_oci::Platform;

/// Flags shared by `copy`, `pull` and `push`.
#[derive(Debug, Args)]
pub struct CopyFlags {
    /// Copy only this platform of an index (os/arch[/variant]); repeatable. The original
    /// index is kept (sparse) unless --rewrite-index
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Vec<Platform>,
    /// With --platform: write a new index holding only the chosen platforms (new digest)
    #[arg(long, requires = "platform")]
    pub rewrite_index: bool,
    /// Also copy referrers (SBOMs, signatures, attestations)
    #[arg(long)]
    pub referrers: bool,
    /// Also push non-distributable (foreign) layers
    #[arg(long)]
    pub include_nondistributable: bool,
    /// Print what would be transferred, write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Credentials for both sides (USER:PASSWORD)
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
    /// Credentials for the source registry
    #[arg(long, value_name = "USER:PASSWORD")]
    pub src_creds: Option<String>,
    /// Credentials for the destination registry
    #[arg(long, value_name = "USER:PASSWORD")]
    pub dest_creds: Option<String>,
    /// Verify TLS certificates (--tls-verify=false to skip)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,
    /// CA bundle (PEM) to trust for registries
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Recompress layers for the destination (new digests; the uncompressed content and
    /// DiffIDs stay the same and are verified)
    #[arg(long, value_enum, value_name = "gzip|zstd|none")]
    pub dest_compress: Option<DestCompress>,
    /// Write Docker schema2 or OCI manifests (new digests; same content and configs)
    #[arg(long, value_enum, value_name = "oci|docker")]
    pub format: Option<ManifestFormat>,
    #[command(flatten)]
    pub verify: VerifyFlags,
}

/// The signature policy flags of `copy`, `pull`, `push` and `import`.
#[derive(Debug, Args)]
pub struct VerifyFlags {
    /// Admit the image only if signed by this key (PEM: ECDSA, RSA, Ed25519); repeatable
    #[arg(long, value_name = "PUBKEY.pem")]
    pub verify_key: Vec<PathBuf>,
    /// Admit a keyless Sigstore bundle by this identity (with --verify-issuer, --trusted-root)
    #[arg(long, value_name = "IDENTITY")]
    pub verify_identity: Option<String>,
    /// The keyless signer's OIDC issuer, exactly
    #[arg(long, value_name = "URL")]
    pub verify_issuer: Option<String>,
    /// Sigstore trusted_root.json (Fulcio, Rekor, CT log keys): checked offline
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
}

/// `--dest-compress`: layer compression at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DestCompress {
    /// gzip (every registry and runtime reads it)
    Gzip,
    /// zstd (OCI only)
    Zstd,
    /// Uncompressed tar
    None,
}

/// `--format`: the manifest format at the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ManifestFormat {
    /// OCI image manifests, indexes and configs
    Oci,
    /// Docker schema2 manifests, manifest lists and container configs
    Docker,
}
