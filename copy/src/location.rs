//! Where an image lives, written the way skopeo users write it:
//! `docker://host/repo:tag` (or a bare `host/repo:tag`), `oci:DIR[:ref]`,
//! `oci-archive:FILE[:ref]`, `store:repo:tag`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use sealift_oci::{Digest, StoreRef};

/// A parsed image location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A registry repository, by tag and/or digest.
    Registry {
        /// Registry as written after normalisation (`docker.io` for Docker Hub).
        host: String,
        /// Repository (`library/alpine` on Docker Hub).
        repo: String,
        /// Tag, when given.
        tag: Option<String>,
        /// Digest, when given.
        digest: Option<Digest>,
    },
    /// The local store.
    Store(StoreRef),
    /// An OCI layout directory; the ref selects an index.json entry by ref name.
    LayoutDir {
        /// Directory.
        path: PathBuf,
        /// Ref name, when given.
        reference: Option<String>,
    },
    /// An OCI layout tarball.
    LayoutTar {
        /// Tarball.
        path: PathBuf,
        /// Ref name, when given.
        reference: Option<String>,
    },
}

/// Why a location string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Registry reference rejected.
    #[error("{input:?} is not a valid image reference: {reason}")]
    Registry {
        /// What was given.
        input: String,
        /// Why.
        reason: String,
    },
    /// Store reference rejected.
    #[error("{input:?} is not a valid store reference: {reason}")]
    Store {
        /// What was given.
        input: String,
        /// Why.
        reason: String,
    },
    /// Empty path.
    #[error("{0:?} names no path")]
    EmptyPath(String),
    /// A transport sealift does not know.
    #[error("unknown transport in {0:?} (use docker://, oci:, oci-archive: or store:)")]
    UnknownTransport(String),
}

fn split_path_ref(rest: &str, input: &str) -> Result<(PathBuf, Option<String>), LocationError> {
    // As skopeo does: the path ends at the first ':'.
    let (path, r) = match rest.split_once(':') {
        Some((p, r)) => (p, Some(r.to_string()).filter(|r| !r.is_empty())),
        None => (rest, None),
    };
    if path.is_empty() {
        return Err(LocationError::EmptyPath(input.to_string()));
    }
    Ok((PathBuf::from(path), r))
}

impl FromStr for Location {
    type Err = LocationError;

    fn from_str(s: &str) -> Result<Self, LocationError> {
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            let (path, reference) = split_path_ref(rest, s)?;
            return Ok(Location::LayoutTar { path, reference });
        }
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, reference) = split_path_ref(rest, s)?;
            return Ok(Location::LayoutDir { path, reference });
        }
        if let Some(rest) = s.strip_prefix("store:") {
            let r: StoreRef = rest
                .parse()
                .map_err(|e: sealift_oci::reference::RefError| LocationError::Store {
                    input: s.to_string(),
                    reason: e.to_string(),
                })?;
            return Ok(Location::Store(r));
        }
        let name = match s.strip_prefix("docker://") {
            Some(rest) => rest,
            None if s.contains("://") => {
                return Err(LocationError::UnknownTransport(s.to_string()))
            }
            None => s,
        };
        let reg_err = |reason: String| LocationError::Registry {
            input: s.to_string(),
            reason,
        };
        let r: oci_spec::distribution::Reference = name
            .parse()
            .map_err(|e: oci_spec::distribution::ParseError| reg_err(e.to_string()))?;
        let digest = r
            .digest()
            .map(|d| d.parse::<Digest>().map_err(|e| reg_err(e.to_string())))
            .transpose()?;
        // oci-spec defaults the tag to "latest"; keep it only when no digest pins the image.
        let tag = match (&digest, r.tag()) {
            (Some(_), Some(t)) if !name.contains(&format!(":{t}@")) => None,
            (_, t) => t.map(str::to_string),
        };
        Ok(Location::Registry {
            host: r.registry().to_string(),
            repo: r.repository().to_string(),
            tag,
            digest,
        })
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry {
                host,
                repo,
                tag,
                digest,
            } => {
                write!(f, "docker://{host}/{repo}")?;
                if let Some(t) = tag {
                    write!(f, ":{t}")?;
                }
                if let Some(d) = digest {
                    write!(f, "@{d}")?;
                }
                Ok(())
            }
            Location::Store(r) => write!(f, "store:{r}"),
            Location::LayoutDir { path, reference } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(r) = reference {
                    write!(f, ":{r}")?;
                }
                Ok(())
            }
            Location::LayoutTar { path, reference } => {
                write!(f, "oci-archive:{}", path.display())?;
                if let Some(r) = reference {
                    write!(f, ":{r}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms() {
        let l: Location = "alpine".parse().unwrap();
        assert_eq!(
            l,
            Location::Registry {
                host: "docker.io".into(),
                repo: "library/alpine".into(),
                tag: Some("latest".into()),
                digest: None
            }
        );
        let l: Location = "docker://127.0.0.1:5000/a/b:v1".parse().unwrap();
        assert_eq!(l.to_string(), "docker://127.0.0.1:5000/a/b:v1");
        let d = Digest::sha256(b"x");
        let l: Location = format!("localhost:5000/a@{d}").parse().unwrap();
        assert!(matches!(
            l,
            Location::Registry {
                tag: None,
                digest: Some(_),
                ..
            }
        ));
        let l: Location = "oci:/tmp/x:sample/hello:1.0".parse().unwrap();
        assert_eq!(
            l,
            Location::LayoutDir {
                path: "/tmp/x".into(),
                reference: Some("sample/hello:1.0".into())
            }
        );
        let l: Location = "oci-archive:b.tar".parse().unwrap();
        assert_eq!(
            l,
            Location::LayoutTar {
                path: "b.tar".into(),
                reference: None
            }
        );
        let l: Location = "store:apps/web:1".parse().unwrap();
        assert_eq!(l.to_string(), "store:apps/web:1");
        assert!("oci:".parse::<Location>().is_err());
        assert!("ftp://x/y".parse::<Location>().is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,80}") {
            let _ = s.parse::<Location>();
        }
    }
}
