//! References to images in the store: `repo:tag`, `repo@sha256:…`, `repo:tag@sha256:…`;
//! and the name rules of the distribution API's URL paths ([`check_repo`],
//! [`check_reference`]), which the registry client and the sync config share.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// A validated repository name (distribution grammar, lowercase, `/`-separated, an optional
/// `host[:port]` first component).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repo(String);

/// A validated tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

/// A reference to an image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreRef {
    /// Repository.
    pub repo: Repo,
    /// Tag, when given (defaults to `latest` only when no digest is given either).
    pub tag: Option<Tag>,
    /// Digest, when given; it wins over the tag for lookups.
    pub digest: Option<Digest>,
}

/// Why a string is not a reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// Bad repository name.
    #[error(
        "repository name {0:?} is invalid (lowercase letters, digits and . _ - separated by /)"
    )]
    Repo(String),
    /// Bad tag.
    #[error("tag {0:?} is invalid (up to 128 of A-Z a-z 0-9 _ . -, not starting with . or -)")]
    Tag(String),
    /// Bad digest.
    #[error(transparent)]
    Digest(#[from] crate::digest::DigestError),
}

fn component_ok(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes()
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && c.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
        && !c.contains("..")
}

fn host_ok(c: &str) -> bool {
    let (host, port) = match c.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (c, None),
    };
    port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        && !host.is_empty()
        && host
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

impl FromStr for Repo {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        let parts: Vec<&str> = s.split('/').collect();
        let first_is_host = parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost");
        let ok = s.len() <= 255
            && parts.iter().enumerate().all(|(i, p)| {
                if i == 0 && first_is_host {
                    host_ok(p)
                } else {
                    component_ok(p)
                }
            });
        if ok {
            Ok(Repo(s.to_string()))
        } else {
            Err(RefError::Repo(s.to_string()))
        }
    }
}

impl FromStr for Tag {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(RefError::Tag(s.to_string()))
        }
    }
}

impl Repo {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Tag {
    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StoreRef {
    /// `repo:tag`.
    pub fn tagged(repo: Repo, tag: Tag) -> StoreRef {
        StoreRef {
            repo,
            tag: Some(tag),
            digest: None,
        }
    }
}

impl FromStr for StoreRef {
    type Err = RefError;
    fn from_str(s: &str) -> Result<Self, RefError> {
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (
                &name[..last_slash + i],
                Some(name[last_slash + i + 1..].parse::<Tag>()?),
            ),
            None => (name, None),
        };
        let tag = match (tag, &digest) {
            (None, None) => Some(Tag("latest".into())),
            (t, _) => t,
        };
        Ok(StoreRef {
            repo: repo.parse()?,
            tag,
            digest,
        })
    }
}

impl fmt::Display for StoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.repo.as_str())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A name the distribution API cannot carry in a URL path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a repository path.
    #[error("invalid repository {0:?}")]
    Repository(String),
    /// Neither a tag nor a digest.
    #[error("invalid reference {0:?}")]
    Reference(String),
}

impl NameError {
    /// What kind of name it is (`repository`, `reference`).
    pub fn what(&self) -> &'static str {
        match self {
            NameError::Repository(_) => "repository",
            NameError::Reference(_) => "reference",
        }
    }

    /// The name refused.
    pub fn value(&self) -> &str {
        match self {
            NameError::Repository(v) | NameError::Reference(v) => v,
        }
    }
}

/// Check a repository path as the registry API carries it (`/v2/<repo>/...`): lowercase
/// components of `[a-z0-9._-]`, each starting and ending with a letter or digit, separated
/// by `/`, at most 255 bytes. No host part: the client adds that.
pub fn check_repo(repo: &str) -> Result<(), NameError> {
    let ok = !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::Repository(repo.to_string()))
    }
}

/// Check a manifest reference: a tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest.
pub fn check_reference(reference: &str) -> Result<(), NameError> {
    let is_tag = !reference.is_empty()
        && reference.len() <= 128
        && reference
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if is_tag || reference.parse::<Digest>().is_ok() {
        Ok(())
    } else {
        Err(NameError::Reference(reference.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn api_names() {
        assert!(check_repo("library/alpine").is_ok());
        assert!(check_repo("a-b/c_d/e.f").is_ok());
        for bad in ["", "A", "a//b", "../x", "a/..", "a?b", "/a", "a/"] {
            assert_eq!(
                check_repo(bad),
                Err(NameError::Repository(bad.into())),
                "{bad}"
            );
        }
        assert!(check_reference("v1.0_x-y").is_ok());
        assert!(check_reference(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        .is_ok());
        for bad in ["", ".x", "-x", "a/b", "a?b", &"x".repeat(129)] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
        let e = check_reference("a/b").unwrap_err();
        assert_eq!((e.what(), e.value()), ("reference", "a/b"));
        assert_eq!(e.to_string(), "invalid reference \"a/b\"");
    }

    #[test]
    fn forms() {
        let r: StoreRef = "localhost:5000/a/b:v1".parse().unwrap();
        assert_eq!(r.repo.as_str(), "localhost:5000/a/b");
        assert_eq!(r.tag.as_ref().unwrap().as_str(), "v1");
        let r: StoreRef = "alpine".parse().unwrap();
        assert_eq!(r.to_string(), "alpine:latest");
        let d = Digest::sha256(b"x");
        let r: StoreRef = format!("app@{d}").parse().unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.digest, Some(d));
        for bad in [
            "Upper:1",
            "a//b",
            "../x",
            "a:-bad",
            "a:",
            "/abs",
            "a/",
            "a:b@sha256:xx",
        ] {
            assert!(bad.parse::<StoreRef>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn valid_refs_roundtrip(repo in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}", tag in "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}") {
            let s = format!("{repo}:{tag}");
            let r: StoreRef = s.parse().unwrap();
            prop_assert_eq!(r.to_string(), s);
        }

        #[test]
        fn never_panics(s in ".{0,100}") {
            let _ = s.parse::<StoreRef>();
        }
    }
}
