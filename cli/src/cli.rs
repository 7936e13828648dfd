//! Command-line arguments. Everything that can be checked without touching the store is
//! parsed here into validated types (references, platforms, durations), so a typo is a
//! usage error (exit code 2) before any I/O. Every command's arguments are here, so this
//! module imports nothing from `cmd` (which imports it).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;
use sealift_layout::split;
use sealift_oci::{Platform, Repo, StoreRef, Tag};
use sealift_serve::ServeOptions;
use sealift_store::Location;

pub use crate::cli_airgap::{ImagesFromArgs, MirrorConfigArgs, MirrorFormat};
mod copy_flags;
pub use copy_flags::{CopyFlags, DestCompress, ManifestFormat, VerifyFlags};

/// Keep container images in an embedded content-addressed store and move them between
/// registries, OCI layouts and tarballs.
#[derive(Debug, Parser)]
#[command(name = "sealift", version, propagate_version = true)]
pub struct Cli {
    /// Store directory [default: $XDG_DATA_HOME/sealift or ~/.local/share/sealift]
    #[arg(long, global = true, env = "SEALIFT_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Print one JSON document on stdout instead of tables and messages
    #[arg(long, global = true)]
    pub json: bool,

    /// Print less: no progress bars and no confirmations
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store and choose where its blob bytes live: local files (the default) or
    /// an S3-compatible bucket
    Init(InitArgs),
    /// List tagged images
    Images,
    /// Show an image's manifest graph, config, DiffIDs and ChainIDs
    Inspect(InspectArgs),
    /// Give an image another tag
    Tag(TagArgs),
    /// Remove tags (the content stays until `sealift gc`)
    Rm(RmArgs),
    /// Delete what no tag, pin or running job reaches
    Gc(GcArgs),
    /// Check the store's records, files and graph
    Verify(VerifyArgs),
    /// Move the store's blob bytes to another place (local files or an S3 bucket)
    Migrate(MigrateArgs),
    /// Show disk usage: logical against physical bytes
    Du,
    /// Import an OCI image layout (directory or tarball)
    Import(ImportArgs),
    /// Export images as an OCI image layout (directory, or tarball by the name's extension)
    Export(ExportArgs),
    /// Copy an image between registries (docker://), layouts (oci:, oci-archive:) and the store (store:)
    Copy(CopyArgs),
    /// Copy an image from a registry into the store (as host/repo:tag)
    Pull(PullArgs),
    /// Copy an image from the store to a registry or layout
    Push(PushArgs),
    /// Run the sync jobs of a config file (once, or as a daemon); `sync status`, `sync history`
    Sync(SyncArgs),
    /// Serve the store as a read-only OCI registry (until SIGINT/SIGTERM)
    Serve(ServeArgs),
    /// Write what the store holds (blob and manifest digests), for delta bundles (export --base)
    Inventory(InventoryArgs),
    /// Print the images Kubernetes manifests or text lists name, normalised (optionally pinned)
    ImagesFrom(ImagesFromArgs),
    /// Write containerd, podman/CRI-O or k3s configuration that pulls through `sealift serve`
    MirrorConfig(MirrorConfigArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout
    Completions(CompletionsArgs),
    /// Write the man pages (sealift.1, sealift-COMMAND.1, …) to a directory, or print one
    Man(ManArgs),
}

/// `sealift copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source: docker://HOST/REPO:TAG (or HOST/REPO:TAG), oci:DIR[:REF], oci-archive:FILE[:REF], store:REPO:TAG
    #[arg(value_name = "SRC")]
    pub source: sealift_copy::location::Location,
    /// Destination, in the same forms
    #[arg(value_name = "DST")]
    pub destination: sealift_copy::location::Location,
    #[command(flatten)]
    pub flags: CopyFlags,
}

/// `sealift pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Registry image: HOST/REPO:TAG or HOST/REPO@sha256:…
    #[arg(value_name = "REF")]
    pub reference: sealift_copy::location::Location,
    #[command(flatten)]
    pub flags: CopyFlags,
}

/// `sealift push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image in the store: repo:tag or repo@sha256:…
    #[arg(value_name = "STORE-REF")]
    pub source: StoreRef,
    /// Destination: docker://HOST/REPO:TAG, oci:DIR[:REF], oci-archive:FILE[:REF]
    #[arg(value_name = "DST")]
    pub destination: sealift_copy::location::Location,
    #[command(flatten)]
    pub flags: CopyFlags,
}

/// `sealift inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image: repo:tag or repo@sha256:…
    #[arg(value_name = "REF")]
    pub reference: StoreRef,

    /// For an index, show only the image for this platform (os/arch[/variant])
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
}

/// `sealift tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image: repo:tag or repo@sha256:…
    #[arg(value_name = "SRC")]
    pub source: StoreRef,

    /// New tag: repo:tag
    #[arg(value_name = "DST")]
    pub target: TagRef,
}

/// `sealift rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// repo:tag removes that tag; repo@sha256:… removes every tag of repo pointing there
    #[arg(value_name = "REF", required = true)]
    pub references: Vec<StoreRef>,
}

/// `sealift init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where blob bytes live: `local` (files under the store directory) or
    /// s3://BUCKET/PREFIX (endpoint, region and credentials from AWS_ENDPOINT_URL,
    /// AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or ~/.aws). The store remembers
    /// it; every other command then uses it
    #[arg(long, value_name = "LOCATION", default_value = "local")]
    pub blobs: Location,
    /// A read replica of the store that writes this bucket and prefix: its metadata follows
    /// the writer through a sync job, blobs already in the bucket are adopted instead of
    /// copied, and its GC never deletes objects (needs --blobs s3://…)
    #[arg(long)]
    pub replica: bool,
}

/// `sealift gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed without removing anything
    #[arg(long)]
    pub dry_run: bool,

    /// Keep never-linked blobs and orphaned referrers younger than this (30s, 10m, 1h, 0)
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: GraceDuration,
}

/// `sealift migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Where the blobs go: `local` (files under the store directory) or
    /// `s3://BUCKET/PREFIX` (endpoint, region and credentials from the AWS environment and
    /// files). Every blob is verified on the way; run again to resume after an interruption
    #[arg(long, value_name = "local|s3://BUCKET/PREFIX")]
    pub blobs: sealift_store::Location,
}

/// `sealift verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Re-hash every blob and recompute every layer's DiffID
    #[arg(long)]
    pub full: bool,

    /// Drop records whose bytes are gone or wrong, and remove orphan files
    #[arg(long)]
    pub repair: bool,
}

/// `sealift import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Layout directory, .tar / .tar.gz / .tar.zst file, or a split bundle (its first part
    /// NAME.000, its NAME.sha256, or their folder)
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Tag for an image the layout does not name (or names by a bare tag)
    #[arg(long, value_name = "REPO:TAG")]
    pub tag: Option<TagRef>,

    /// Then push every imported image to this registry: docker://HOST[/PREFIX] (each image
    /// goes to HOST/PREFIX/REPO:TAG)
    #[arg(long, value_name = "REGISTRY")]
    pub push: Option<String>,

    // Tag only the images whose signatures in the bundle satisfy the policy (the others are
    // reported, left untagged, and the exit code is 1).
    #[command(flatten)]
    pub verify: VerifyFlags,

    #[command(flatten)]
    pub push_flags: PushFlags,
}

/// `sealift export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output: a directory, or a tarball when the name ends in .tar, .tar.gz, .tgz or .tar.zst
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,

    /// Images to export: repo:tag, repo@sha256:…, or a pattern over the store's tags
    /// (apps/*:v1.*, repo:*, apps/** — a pattern without :TAG takes every tag)
    #[arg(value_name = "SELECTOR", required_unless_present = "images_from")]
    pub references: Vec<sealift_layout::Selector>,

    /// Also export the images Kubernetes manifests or text lists name (see images-from)
    #[arg(long, value_name = "FILE")]
    pub images_from: Vec<PathBuf>,

    /// Also export each image's referrers (SBOMs, signatures)
    #[arg(long)]
    pub referrers: bool,

    #[command(flatten)]
    pub bundle: BundleFlags,
}

/// `sealift sync`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    /// What to report instead of running jobs
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// The config file (see config.example.toml)
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Run only this job
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// Print what would be copied, skipped and pruned (with bytes); change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Keep running: jobs on their schedules, config reloaded when it changes
    #[arg(long, conflicts_with_all = ["job", "dry_run"])]
    pub daemon: bool,
}

/// `sealift sync status|history`.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// The last run of each job: copied, skipped, failed, refused, bytes, duration
    Status,
    /// Past runs, newest first
    History(HistoryArgs),
}

/// `sealift sync history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this job
    pub job: Option<String>,
    /// How many runs
    #[arg(short = 'n', long, default_value_t = 10)]
    pub limit: usize,
}

/// `sealift serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one). Plain HTTP only on loopback
    /// addresses unless --insecure-plain-http
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "IP:PORT")]
    pub addr: SocketAddr,
    /// Require basic auth from the users of this htpasswd file (bcrypt entries: htpasswd -B)
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Allow plain HTTP on an address that is not loopback (content and passwords in clear)
    #[arg(long)]
    pub insecure_plain_http: bool,
    /// Close a connection after this many seconds without a request in flight or a byte
    /// moved
    #[arg(long, default_value_t = ServeOptions::default().idle_timeout_secs, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Connections open at once; at the limit the one idle the longest is closed
    #[arg(long, default_value_t = ServeOptions::default().max_connections, value_name = "N")]
    pub max_connections: usize,
    /// Answer blob downloads with a redirect to a presigned URL of the object store, so the
    /// bytes bypass this server (stores on object storage only; HEAD is answered here)
    #[arg(long)]
    pub redirect_blobs: bool,
    /// How long a redirect's presigned URL stays valid (30s, 5m, at most 1h)
    #[arg(
        long,
        default_value = "5m",
        value_name = "DURATION",
        requires = "redirect_blobs"
    )]
    pub redirect_ttl: GraceDuration,
}

/// `sealift inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Where to write the inventory (a small binary file; see ARCHITECTURE.md)
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// Bundle options of `sealift export`.
#[derive(Debug, Args)]
pub struct BundleFlags {
    /// Delta bundle: leave out every blob the site's inventory (from `sealift inventory`)
    /// lists; manifests are always included
    #[arg(long, value_name = "INVENTORY")]
    pub base: Option<PathBuf>,

    /// Write the tarball as numbered parts of at most SIZE (500M, 1G) plus NAME.sha256
    #[arg(long, value_name = "SIZE", value_parser = split::parse_size)]
    pub split: Option<u64>,

    /// oci (an OCI image layout) or docker-archive (for docker load / podman load)
    #[arg(long, value_enum, default_value = "oci")]
    pub format: ExportFormat,

    /// docker-archive: the platform to take from multi-platform images (os/arch[/variant])
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<Platform>,
}

/// What `sealift export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// OCI image layout (directory or tarball)
    Oci,
    /// docker save format: manifest.json, repositories, configs and layers
    DockerArchive,
}

/// Registry options of `sealift import --push`.
#[derive(Debug, Args)]
pub struct PushFlags {
    /// Credentials for the --push registry (USER:PASSWORD)
    #[arg(long, value_name = "USER:PASSWORD", requires = "push")]
    pub dest_creds: Option<String>,
    /// Verify the --push registry's TLS certificate (--tls-verify=false to skip)
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", requires = "push")]
    pub tls_verify: Option<bool>,
}

/// `sealift completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for, e.g. `source <(sealift completions bash)`
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: Shell,
}

/// `sealift man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write every page into this directory (created if missing): sealift.1 and one per
    /// command, e.g. sealift-copy.1, sealift-sync-status.1
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Without --output: print the page of this command (e.g. `copy`, or `sync status`)
    /// instead of sealift.1
    #[arg(value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A `repo:tag` with no digest: something a tag can be set on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagRef {
    /// Repository.
    pub repo: Repo,
    /// Tag.
    pub tag: Tag,
}

impl FromStr for TagRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let r: StoreRef = s.parse().map_err(|e| format!("{e}"))?;
        match (r.tag, r.digest) {
            (Some(tag), None) => Ok(TagRef { repo: r.repo, tag }),
            _ => Err(format!(
                "{s:?} is not repo:tag (a tag cannot carry a digest)"
            )),
        }
    }
}

impl fmt::Display for TagRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

impl From<TagRef> for StoreRef {
    fn from(t: TagRef) -> StoreRef {
        StoreRef::tagged(t.repo, t.tag)
    }
}

/// A duration written as `0` or numbers with units, e.g. `30s`, `10m`, `1h`, `2d`, `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GraceDuration(pub Duration);

impl FromStr for GraceDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a duration (examples: 0, 30s, 10m, 1h, 1h30m, 2d)");
        let t = s.trim();
        if t == "0" {
            return Ok(GraceDuration(Duration::ZERO));
        }
        let mut total: u64 = 0;
        let mut rest = t;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = match &rest[..unit_len] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86400,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        Ok(GraceDuration(Duration::from_secs(total)))
    }
}

impl fmt::Display for GraceDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if s == 0 {
            return f.write_str("0");
        }
        let (d, h, m, sec) = (s / 86400, s % 86400 / 3600, s % 3600 / 60, s % 60);
        for (n, u) in [(d, "d"), (h, "h"), (m, "m"), (sec, "s")] {
            if n > 0 {
                write!(f, "{n}{u}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        let d = |s: &str| s.parse::<GraceDuration>().map(|g| g.0.as_secs());
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("30s"), Ok(30));
        assert_eq!(d("10m"), Ok(600));
        assert_eq!(d("1h"), Ok(3600));
        assert_eq!(d("1h30m"), Ok(5400));
        assert_eq!(d("2d"), Ok(172800));
        for bad in ["", "10", "h", "1x", "-1s", "1.5h", "99999999999999999999d"] {
            assert!(d(bad).is_err(), "{bad}");
        }
        assert_eq!(
            GraceDuration(Duration::from_secs(5400)).to_string(),
            "1h30m"
        );
    }

    #[test]
    fn tag_refs() {
        let t: TagRef = "sample/hello:1.0".parse().unwrap();
        assert_eq!(t.to_string(), "sample/hello:1.0");
        let d = sealift_oci::Digest::sha256(b"x");
        assert!(format!("sample/hello@{d}").parse::<TagRef>().is_err());
        assert!("Bad:1".parse::<TagRef>().is_err());
    }
}
