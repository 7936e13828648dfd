//! Image references as Kubernetes manifests, docker and containerd write them, normalised
//! the way those tools do (`nginx` → `docker.io/library/nginx:latest`), and the store
//! reference that `sealift pull` and registry sync jobs file such an image under
//! (`HOST/REPO`, the host kept).
//!
//! The rules (docker's `ParseNormalizedNamed`): the first path component is a registry
//! host when it has a `.` or a `:` or is `localhost`, else the image is on Docker Hub
//! (`docker.io`, and `index.docker.io` is the same); a Docker Hub name of one component gets
//! `library/`; a reference with neither tag nor digest gets `:latest`; a digest is kept
//! (with its tag, when both are written).

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;
use crate::reference::{check_repo, Repo, StoreRef, Tag};

/// Docker Hub's canonical host name.
pub const DOCKER_HUB: &str = "docker.io";

/// A normalised image reference: `HOST/REPO[:TAG][@DIGEST]`, with a tag or a digest or both.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host, with its port when written (`docker.io`, `localhost:5000`).
    pub host: String,
    /// Repository path at that registry (`library/nginx`).
    pub repo: String,
    /// Tag (`latest` when neither tag nor digest was written).
    pub tag: Option<Tag>,
    /// Digest, when written.
    pub digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not an image reference: {reason}")]
pub struct ImageRefError {
    /// What was given.
    pub input: String,
    /// Why.
    pub reason: String,
}

fn is_host(c: &str) -> bool {
    c.contains('.') || c.contains(':') || c == "localhost"
}

/// Whether `h` is a registry `host[:port]`: DNS labels or an IPv4 address (letters, digits,
/// inner `-`), an optional port of up to 5 digits. Nothing that could leave a quoted TOML
/// or YAML string passes.
pub fn is_registry_host(h: &str) -> bool {
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        && !name.is_empty()
        && name.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromStr for ImageRef {
    type Err = ImageRefError;

    fn from_str(s: &str) -> Result<Self, ImageRefError> {
        let err = |reason: &str| ImageRefError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() || s.len() > 1024 {
            return Err(err("empty or longer than 1024 bytes"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (
                n,
                Some(d.parse::<Digest>().map_err(|e| err(&e.to_string()))?),
            ),
            None => (s, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(
                    name[last_slash + i + 1..]
                        .parse::<Tag>()
                        .map_err(|e| err(&e.to_string()))?,
                ),
            ),
            None => (name, None),
        };
        let (host, repo) = match path.split_once('/') {
            Some((h, r)) if is_host(h) => (h, r.to_string()),
            _ => (DOCKER_HUB, path.to_string()),
        };
        if !is_registry_host(host) {
            return Err(err(&format!("{host:?} is not a registry host[:port]")));
        }
        let host = if host == "index.docker.io" {
            DOCKER_HUB
        } else {
            host
        };
        let repo = if host == DOCKER_HUB && !repo.contains('/') {
            format!("library/{repo}")
        } else {
            repo
        };
        check_repo(&repo).map_err(|_| {
            err("the repository path takes lowercase letters, digits and . _ - between /")
        })?;
        let tag = match (tag, &digest) {
            (None, None) => Some(Tag::from_str("latest").map_err(|e| err(&e.to_string()))?),
            (t, _) => t,
        };
        Ok(ImageRef {
            host: host.to_string(),
            repo,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.repo)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl ImageRef {
    /// The store reference the image is filed under by `pull` and registry sync jobs:
    /// repository `HOST/REPO`, the same tag and digest.
    pub fn store_ref(&self) -> Result<StoreRef, ImageRefError> {
        let repo: Repo = format!("{}/{}", self.host, self.repo).parse().map_err(
            |e: crate::reference::RefError| ImageRefError {
                input: self.to_string(),
                reason: e.to_string(),
            },
        )?;
        Ok(StoreRef {
            repo,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
        })
    }

    /// The same image pinned to `digest` (the tag kept).
    pub fn pinned(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        s.parse::<ImageRef>()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string()
    }

    #[test]
    fn normalises_as_docker_does() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(norm("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(
            norm("index.docker.io/library/busybox:1"),
            "docker.io/library/busybox:1"
        );
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(norm("quay.io/x/y"), "quay.io/x/y:latest");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/x:v1"), "localhost:5000/x:v1");
        assert_eq!(
            norm("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(
            norm(&format!("nginx@{d}")),
            format!("docker.io/library/nginx@{d}")
        );
        assert_eq!(
            norm(&format!("127.0.0.1:5000/a/b:1@{d}")),
            format!("127.0.0.1:5000/a/b:1@{d}")
        );
        let r: ImageRef = "quay.io/x/y:2".parse().unwrap();
        assert_eq!(r.store_ref().unwrap().to_string(), "quay.io/x/y:2");
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx@sha256:abc",
            "a//b",
            "quay.io/",
            "-bad.io/x",
            "host:99999999/x",
            "nginx:bad tag",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} parsed");
        }
    }
}
