//! Places a job reads from or writes to (`docker://HOST[/REPO]`, `store:[REPO]`, `oci:DIR`,
//! `oci-archive:FILE`), parsed from their text; and the host rule `[[registry]]` shares.

use std::path::PathBuf;

/// A place images are read from or written to by a job. Unlike a copy's
/// [`Location`](sealift_copy::location::Location), it names repositories, not one image: tags
/// come from the job's selection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Place {
    /// `docker://host` (every repository, through the catalog) or `docker://host/repo`.
    Registry {
        /// `host[:port]`.
        host: String,
        /// One repository (source), or the prefix repositories go under (destination).
        repo: Option<String>,
    },
    /// `store:` or `store:repo`.
    Store {
        /// One repository (source), or a prefix (destination).
        repo: Option<String>,
    },
    /// `oci:DIR`: images are its index.json entries named `repo:tag`.
    LayoutDir {
        /// The directory.
        path: PathBuf,
    },
    /// `oci-archive:FILE`.
    LayoutTar {
        /// The tarball.
        path: PathBuf,
    },
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Registry { host, repo: None } => write!(f, "docker://{host}"),
            Place::Registry {
                host,
                repo: Some(r),
            } => write!(f, "docker://{host}/{r}"),
            Place::Store { repo: None } => write!(f, "store:"),
            Place::Store { repo: Some(r) } => write!(f, "store:{r}"),
            Place::LayoutDir { path } => write!(f, "oci:{}", path.display()),
            Place::LayoutTar { path } => write!(f, "oci-archive:{}", path.display()),
        }
    }
}

/// The repository a place names, if any.
pub fn place_repo(p: &Place) -> Option<&str> {
    match p {
        Place::Registry { repo, .. } | Place::Store { repo } => repo.as_deref(),
        _ => None,
    }
}

/// Check `host[:port]`.
pub(crate) fn check_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && !host.contains('/')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(format!("{host:?} is not host[:port]"))
    }
}

fn check_repo_path(repo: &str) -> Result<(), String> {
    sealift_oci::reference::check_repo(repo).map_err(|e| e.to_string())
}

/// Parse a job's `source` or `destination`; relative paths resolve with `resolve`.
pub(crate) fn parse_place(s: &str, resolve: &dyn Fn(&str) -> PathBuf) -> Result<Place, String> {
    let no_ref = |r: &str| -> Result<(), String> {
        if r.contains('@') || r.contains(':') {
            return Err(format!(
                "{s:?} names a tag or digest; a job's source and destination name repositories, tags go in [job.tags]"
            ));
        }
        check_repo_path(r)
    };
    if let Some(rest) = s.strip_prefix("docker://") {
        let (host, repo) = match rest.split_once('/') {
            Some((h, r)) => (h, Some(r.trim_end_matches('/'))),
            None => (rest, None),
        };
        check_host(host)?;
        let repo = repo.filter(|r| !r.is_empty());
        if let Some(r) = repo {
            no_ref(r)?;
        }
        return Ok(Place::Registry {
            host: host.to_string(),
            repo: repo.map(str::to_string),
        });
    }
    if let Some(rest) = s.strip_prefix("store:") {
        let repo = Some(rest.trim_end_matches('/')).filter(|r| !r.is_empty());
        if let Some(r) = repo {
            no_ref(r)?;
        }
        return Ok(Place::Store {
            repo: repo.map(str::to_string),
        });
    }
    for (prefix, tar) in [("oci-archive:", true), ("oci:", false)] {
        if let Some(rest) = s.strip_prefix(prefix) {
            if rest.is_empty() {
                return Err(format!("{s:?} names no path"));
            }
            let path = resolve(rest);
            return Ok(if tar {
                Place::LayoutTar { path }
            } else {
                Place::LayoutDir { path }
            });
        }
    }
    Err(format!(
        "{s:?}: unknown transport (use docker://HOST[/REPO], store:[REPO], oci:DIR or oci-archive:FILE)"
    ))
}
