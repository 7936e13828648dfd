//! Selectors for `sealift export`: a reference (`repo:tag`, `repo@sha256:…`) or a glob
//! pattern over repository and tag (`apps/*:v1.*`, `repo:*`), resolved against the store's
//! tags into a sorted, de-duplicated list of references.
//!
//! In the repository part `*` and `?` stay within one path component (`apps/*` matches
//! `apps/web`, not `apps/web/api`); `**` crosses components. A pattern without a tag part
//! selects every tag of the matching repositories.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use globset::{GlobBuilder, GlobMatcher};
use sealift_oci::StoreRef;
use sealift_store::Store;

use super::error::LayoutError;

/// One thing to export.
#[derive(Clone, Debug)]
pub enum Selector {
    /// An exact reference.
    Ref(StoreRef),
    /// A glob over the store's tags.
    Pattern {
        /// As written.
        text: String,
        /// Matches repository names.
        repo: GlobMatcher,
        /// Matches tags.
        tag: GlobMatcher,
    },
}

/// Why a selector does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// Neither a valid reference nor a valid pattern.
    #[error("{input:?} is not a reference or pattern: {reason}")]
    Invalid {
        /// As written.
        input: String,
        /// Why.
        reason: String,
    },
}

fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, SelectorError> {
        let invalid = |reason: String| SelectorError::Invalid {
            input: s.to_string(),
            reason,
        };
        if !is_pattern(s) {
            return s
                .parse::<StoreRef>()
                .map(Selector::Ref)
                .map_err(|e| invalid(e.to_string()));
        }
        if s.contains('@') {
            return Err(invalid("a pattern cannot carry a digest".into()));
        }
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match s[last_slash..].rfind(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "*"),
        };
        if repo.is_empty() || tag.is_empty() {
            return Err(invalid("expected REPO[:TAG]".into()));
        }
        let glob = |p: &str, sep: bool| {
            GlobBuilder::new(p)
                .literal_separator(sep)
                .build()
                .map(|g| g.compile_matcher())
                .map_err(|e| invalid(e.to_string()))
        };
        Ok(Selector::Pattern {
            text: s.to_string(),
            repo: glob(repo, true)?,
            tag: glob(tag, false)?,
        })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Ref(r) => write!(f, "{r}"),
            Selector::Pattern { text, .. } => f.write_str(text),
        }
    }
}

/// The references `selectors` name, in selector order (each pattern's matches sorted by
/// repository then tag), each once. A selector that matches nothing is an error naming it.
pub fn resolve(store: &Store, selectors: &[Selector]) -> Result<Vec<StoreRef>, LayoutError> {
    let tags = store.tags()?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for sel in selectors {
        let matched: Vec<StoreRef> = match sel {
            Selector::Ref(r) => {
                // Resolving now names a missing ref before anything is written.
                store.resolve(r)?;
                vec![r.clone()]
            }
            Selector::Pattern { repo, tag, .. } => tags
                .iter()
                .filter(|t| repo.is_match(t.repo.as_str()) && tag.is_match(t.tag.as_str()))
                .map(|t| StoreRef::tagged(t.repo.clone(), t.tag.clone()))
                .collect(),
        };
        if matched.is_empty() {
            return Err(LayoutError::NoMatch(sel.to_string()));
        }
        for r in matched {
            if seen.insert(r.to_string()) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(sel: &str, repo: &str, tag: &str) -> bool {
        match sel.parse::<Selector>().unwrap() {
            Selector::Pattern {
                repo: r, tag: t, ..
            } => r.is_match(repo) && t.is_match(tag),
            Selector::Ref(_) => panic!("{sel} parsed as a ref"),
        }
    }

    #[test]
    fn patterns() {
        assert!(matches("apps/*:v1.*", "apps/web", "v1.2"));
        assert!(!matches("apps/*:v1.*", "apps/web", "v2.0"));
        assert!(!matches("apps/*:v1.*", "apps/web/api", "v1.0"));
        assert!(matches("apps/**:v1.*", "apps/web/api", "v1.0"));
        assert!(matches("web:*", "web", "anything"));
        assert!(matches("apps/*", "apps/db", "latest"));
        assert!(matches(
            "registry.local:5000/*:*",
            "registry.local:5000/x",
            "1"
        ));
        assert!(matches!(
            "apps/web:1".parse::<Selector>(),
            Ok(Selector::Ref(_))
        ));
        assert!("apps/*@sha256:00".parse::<Selector>().is_err());
        assert!("apps/[:x".parse::<Selector>().is_err());
    }
}
