//! Arguments of the air-gap helpers: `images-from` (image lists from Kubernetes manifests)
//! and `mirror-config` (client configuration pointing nodes at `sealift serve`). Kept apart
//! from `cli.rs` only for its length; like it, this imports nothing from `cmd`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// `sealift images-from`.
#[derive(Debug, Args)]
pub struct ImagesFromArgs {
    /// Kubernetes manifests (multi-document YAML, `helm template` output, `kubectl get -o
    /// yaml` Lists) or text lists (one reference per line, `#` comments); a file is YAML
    /// when named .yaml, .yml or .json or when a line starts with `kind:` or `apiVersion:`
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Pin each image to the digest the store holds (repo:tag@sha256:…); an image the
    /// store does not hold is an error naming it
    #[arg(long)]
    pub pin: bool,
    /// Write the list to this file (atomically) instead of stdout, as a text list that
    /// images-from, export --images-from and images_from read back
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The client configuration `mirror-config` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MirrorFormat {
    /// containerd: certs.d/HOST/hosts.toml per registry host (ctr --hosts-dir, CRI's config_path)
    Containerd,
    /// podman, CRI-O, skopeo, buildah: a registries.conf with a [[registry]] mirror per host
    RegistriesConf,
    /// k3s and RKE2: registries.yaml (mirrors, rewrites, configs)
    K3s,
}

/// `sealift mirror-config`.
#[derive(Debug, Args)]
pub struct MirrorConfigArgs {
    /// Where `sealift serve` listens, as the nodes reach it (HOST:PORT)
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// Which client's configuration to write
    #[arg(long, value_enum)]
    pub format: MirrorFormat,
    /// The directory to write into (created if missing)
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// The server speaks plain HTTP (serve without --tls-cert)
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// The CA certificate (PEM) that signed the server's certificate: copied beside the
    /// configuration and named in it
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// k3s only: the user of serve's --htpasswd, written into registries.yaml's configs
    #[arg(long, value_name = "USER", requires = "password_env")]
    pub username: Option<String>,
    /// k3s only: the environment variable holding that user's password. A password is
    /// written (into a file of mode 0600) only when given this way; otherwise none is
    /// written and the nodes' own credentials apply
    #[arg(long, value_name = "VAR", requires = "username")]
    pub password_env: Option<String>,
    /// Read the repositories from the running server's catalog instead of the store (which
    /// `sealift serve` holds while it runs); with --insecure or --ca as written
    #[arg(long, conflicts_with = "selectors")]
    pub from_server: bool,
    /// The sync config of --job
    #[arg(long, value_name = "FILE", requires = "job")]
    pub config: Option<PathBuf>,
    /// Map the registry hosts this sync job fetches from (its docker://HOST source, or the
    /// hosts its images_from lists name) instead of the store's
    #[arg(long, value_name = "NAME", requires = "config", conflicts_with_all = ["from_server", "selectors"])]
    pub job: Option<String>,
    /// Registry hosts to map even when the store holds no image of theirs (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only the registry hosts of these images: repo:tag or patterns as export takes them
    /// [default: every image the store holds]
    #[arg(value_name = "SELECTOR")]
    pub selectors: Vec<sealift_layout::Selector>,
}
