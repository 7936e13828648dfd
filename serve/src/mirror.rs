//! Client configuration that points nodes at `sealift serve` as a mirror of the registries
//! the store's images came from: containerd's `certs.d/HOST/hosts.toml`, a
//! `registries.conf` for podman, CRI-O, skopeo and buildah, and k3s/RKE2's
//! `registries.yaml`.
//!
//! The store keeps a pulled image under its registry's name (`docker.io/library/nginx`),
//! and serves it under that name. A client asking its mirror for `docker.io/library/nginx`
//! asks for repository `library/nginx`, so each format puts the registry host back in
//! front of the path:
//!
//! - containerd: the mirror is `[host."SCHEME://SERVER/v2/HOST"]` with `override_path =
//!   true`, so the request path is `/v2/HOST/library/nginx/…`, used as written;
//! - registries.conf: `[[registry.mirror]] location = "SERVER/HOST"` (containers/image
//!   keeps the rest of the name after the location's path);
//! - k3s: the endpoint `SCHEME://SERVER` and a rewrite `"^(.*)$": "HOST/$1"`.
//!
//! [`render`] makes the files (no I/O but reading the CA file), [`write`] writes them,
//! each through a temporary name renamed into place, so a failure leaves no half file.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use sealift_store::Store;

/// Which client's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorFormat {
    /// containerd: `certs.d/HOST/hosts.toml`.
    Containerd,
    /// containers-registries.conf(5) (podman, CRI-O, skopeo, buildah): `registries.conf`.
    RegistriesConf,
    /// k3s and RKE2: `registries.yaml`.
    K3s,
}

/// How the server is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorTls {
    /// Plain HTTP (`sealift serve` without `--tls-cert`).
    PlainHttp,
    /// HTTPS, its certificate verified against the system's roots or this CA (PEM).
    Https {
        /// The CA certificate that signed the server's, copied beside the configuration.
        ca: Option<PathBuf>,
    },
}

/// What to write.
#[derive(Clone, Debug)]
pub struct MirrorOptions {
    /// `HOST:PORT` (or `HOST`) of `sealift serve`, as the nodes reach it.
    pub server: String,
    /// The format.
    pub format: MirrorFormat,
    /// Plain HTTP or HTTPS.
    pub tls: MirrorTls,
    /// k3s only: `configs.SERVER.auth` (user, password). Never read from anywhere but this.
    pub auth: Option<(String, String)>,
    /// The registry hosts to map to the server.
    pub hosts: BTreeSet<String>,
}

/// One file to write, relative to the output directory.
#[derive(Clone, PartialEq, Eq)]
pub struct MirrorFile {
    /// Path under the output directory.
    pub path: PathBuf,
    /// Contents.
    pub bytes: Vec<u8>,
    /// Whether it holds a secret (written mode 0600).
    pub secret: bool,
}

impl std::fmt::Debug for MirrorFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The contents may hold a password.
        f.debug_struct("MirrorFile")
            .field("path", &self.path)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// Why the configuration could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A host name that is not `host[:port]`.
    #[error("{what} {value:?} is not HOST[:PORT]")]
    Host {
        /// `--server` or `registry host`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Nothing to map.
    #[error("no registry host to map: the store holds no image pulled from a registry (HOST/REPO); name hosts with --host")]
    NoHosts,
    /// Auth asked of a format that has no place for it.
    #[error("{0} configuration has no place for credentials: log in on the nodes (ctr --user, podman login, CRI's registry configs)")]
    AuthNotWritten(&'static str),
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] sealift_store::Error),
}

/// The CA file's name beside containerd's hosts.toml, and k3s's path for it on a node.
pub const CA_NAME: &str = "sealift-ca.crt";
/// Where the k3s configuration expects the CA on each node.
pub const K3S_CA_PATH: &str = "/etc/rancher/k3s/sealift-ca.crt";

/// Check `host[:port]` (a DNS name or IPv4 address, an optional port), so nothing that
/// could break out of a quoted TOML or YAML string is ever written.
pub fn check_host(what: &'static str, h: &str) -> Result<(), MirrorError> {
    if sealift_oci::image_ref::is_registry_host(h) {
        Ok(())
    } else {
        Err(MirrorError::Host {
            what,
            value: h.to_string(),
        })
    }
}

/// The registry hosts of the store's images: the first component of each repository that
/// names one (`docker.io/library/nginx` → `docker.io`, as `pull` and registry sync jobs
/// file images), for the tags `keep` accepts. Repositories without a host (an imported
/// layout's `apps/web`) come back apart: no client asks a mirror for them.
pub fn held_hosts(
    store: &Store,
    keep: &dyn Fn(&str, &str) -> bool,
) -> Result<(BTreeSet<String>, BTreeSet<String>), MirrorError> {
    let tags = store.tags()?;
    Ok(hosts_of(
        tags.iter()
            .filter(|t| keep(t.repo.as_str(), t.tag.as_str()))
            .map(|t| t.repo.as_str()),
    ))
}

/// The registry hosts of `repos` (as [`held_hosts`]; a server's catalog lists the same
/// names), and apart the repositories that name none.
pub fn hosts_of<'a>(
    repos: impl IntoIterator<Item = &'a str>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut hosts = BTreeSet::new();
    let mut unmapped = BTreeSet::new();
    for repo in repos {
        match repo.split_once('/') {
            Some((h, _)) if h.contains('.') || h.contains(':') || h == "localhost" => {
                hosts.insert(h.to_string());
            }
            _ => {
                unmapped.insert(repo.to_string());
            }
        }
    }
    (hosts, unmapped)
}

/// The files of `opts`'s format.
pub fn render(opts: &MirrorOptions) -> Result<Vec<MirrorFile>, MirrorError> {
    check_host("--server", &opts.server)?;
    for h in &opts.hosts {
        check_host("registry host", h)?;
    }
    // The server itself needs no mirror.
    let hosts: Vec<&String> = opts.hosts.iter().filter(|h| **h != opts.server).collect();
    if hosts.is_empty() {
        return Err(MirrorError::NoHosts);
    }
    let ca = match &opts.tls {
        MirrorTls::Https { ca: Some(p) } => {
            Some(std::fs::read(p).map_err(|source| MirrorError::Io {
                action: "reading",
                path: p.clone(),
                source,
            })?)
        }
        _ => None,
    };
    let scheme = match opts.tls {
        MirrorTls::PlainHttp => "http",
        MirrorTls::Https { .. } => "https",
    };
    let file = |path: PathBuf, text: String| MirrorFile {
        path,
        bytes: text.into_bytes(),
        secret: false,
    };
    let server = &opts.server;
    let mut files = Vec::new();
    match opts.format {
        MirrorFormat::Containerd | MirrorFormat::RegistriesConf if opts.auth.is_some() => {
            return Err(MirrorError::AuthNotWritten(match opts.format {
                MirrorFormat::Containerd => "containerd's hosts.toml",
                _ => "registries.conf",
            }))
        }
        MirrorFormat::Containerd => {
            for h in hosts {
                let dir = PathBuf::from("certs.d").join(h);
                let mut t = format!(
                    "# Written by sealift mirror-config: pulls of {h}/… go to sealift serve at {server}.\n\
                     # Install as /etc/containerd/certs.d/{h}/hosts.toml (CRI: config_path = \"/etc/containerd/certs.d\";\n\
                     # ctr: --hosts-dir /etc/containerd/certs.d). The store serves {h}'s images under\n\
                     # {h}/REPO, hence the path and override_path. Credentials, if serve asks for them,\n\
                     # go to ctr --user or CRI's registry configs, not here.\n\
                     [host.\"{scheme}://{server}/v2/{h}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n"
                );
                if let Some(ca) = &ca {
                    t.push_str(&format!("  ca = \"{CA_NAME}\"\n"));
                    files.push(MirrorFile {
                        path: dir.join(CA_NAME),
                        bytes: ca.clone(),
                        secret: false,
                    });
                }
                files.push(file(dir.join("hosts.toml"), t));
            }
        }
        MirrorFormat::RegistriesConf => {
            let mut t = format!(
                "# Written by sealift mirror-config: pulls from these registries go to sealift serve at\n\
                 # {server} first. Use it as /etc/containers/registries.conf, or as a drop-in in\n\
                 # /etc/containers/registries.conf.d/. Credentials: podman login {server} (auth.json).\n"
            );
            if ca.is_some() {
                t.push_str(&format!(
                    "# The CA: install certs.d/{server}/ca.crt as /etc/containers/certs.d/{server}/ca.crt.\n"
                ));
            }
            for h in hosts {
                t.push_str(&format!(
                    "\n[[registry]]\nprefix = \"{h}\"\nlocation = \"{h}\"\n\n[[registry.mirror]]\nlocation = \"{server}/{h}\"\n"
                ));
                if opts.tls == MirrorTls::PlainHttp {
                    t.push_str("insecure = true\n");
                }
            }
            files.push(file("registries.conf".into(), t));
            if let Some(ca) = ca {
                files.push(MirrorFile {
                    path: PathBuf::from("certs.d").join(server).join("ca.crt"),
                    bytes: ca,
                    secret: false,
                });
            }
        }
        MirrorFormat::K3s => {
            let mut t = format!(
                "# Written by sealift mirror-config: k3s/RKE2 pull these registries' images from sealift\n\
                 # serve at {server}. Install as /etc/rancher/k3s/registries.yaml (RKE2:\n\
                 # /etc/rancher/rke2/registries.yaml) on every node and restart k3s. The store serves\n\
                 # HOST's images under HOST/REPO, hence each rewrite.\n"
            );
            if ca.is_some() {
                t.push_str(&format!(
                    "# Copy {CA_NAME} to {K3S_CA_PATH} on every node.\n"
                ));
            }
            t.push_str("mirrors:\n");
            for h in hosts {
                t.push_str(&format!(
                    "  \"{h}\":\n    endpoint:\n      - \"{scheme}://{server}\"\n    rewrite:\n      \"^(.*)$\": \"{h}/$1\"\n"
                ));
            }
            let mut secret = false;
            if ca.is_some() || opts.auth.is_some() {
                t.push_str(&format!("configs:\n  \"{server}\":\n"));
                if let Some((user, password)) = &opts.auth {
                    secret = true;
                    t.push_str(&format!(
                        "    auth:\n      username: {}\n      password: {}\n",
                        yaml_string(user),
                        yaml_string(password)
                    ));
                }
                if ca.is_some() {
                    t.push_str(&format!("    tls:\n      ca_file: \"{K3S_CA_PATH}\"\n"));
                }
            }
            files.push(MirrorFile {
                path: "registries.yaml".into(),
                bytes: t.into_bytes(),
                secret,
            });
            if let Some(ca) = ca {
                files.push(MirrorFile {
                    path: CA_NAME.into(),
                    bytes: ca,
                    secret: false,
                });
            }
        }
    }
    Ok(files)
}

/// A YAML double-quoted string (JSON's escaping is valid YAML).
fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Write `files` under `dir` (created if missing), each through `NAME.partial`, synced and
/// renamed; secrets with mode 0600. Returns the paths written.
pub fn write(dir: &Path, files: &[MirrorFile]) -> Result<Vec<PathBuf>, MirrorError> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| MirrorError::Io {
            action,
            path,
            source,
        }
    };
    let mut written = Vec::new();
    for f in files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        }
        let mut tmp = path.clone().into_os_string();
        tmp.push(".partial");
        let tmp = PathBuf::from(tmp);
        // A .partial left by a killed run would keep its old mode through O_CREAT.
        let _ = std::fs::remove_file(&tmp);
        let result = (|| {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(if f.secret { 0o600 } else { 0o644 });
            }
            let mut out = opts.open(&tmp).map_err(io("creating", &tmp))?;
            out.write_all(&f.bytes).map_err(io("writing", &tmp))?;
            out.sync_all().map_err(io("syncing", &tmp))?;
            std::fs::rename(&tmp, &path).map_err(io("renaming", &path))
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
#[path = "mirror_tests.rs"]
mod tests;
