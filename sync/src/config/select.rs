//! Which repositories and tags a job takes: glob and regex allow/deny lists, an explicit
//! tag list, a semver range and "latest N by semver".

use globset::{Glob, GlobMatcher};
use regex::Regex;

/// Allow/deny by glob (`*` stays within one path segment) and by regex (anchored).
#[derive(Clone, Debug, Default)]
pub struct NameFilter {
    allow: Vec<GlobMatcher>,
    deny: Vec<GlobMatcher>,
    allow_regex: Vec<Regex>,
    deny_regex: Vec<Regex>,
}

/// Compile a glob; `*` does not cross `/`.
pub fn glob(p: &str) -> Result<GlobMatcher, String> {
    globset::GlobBuilder::new(p)
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| format!("bad glob {p:?}: {e}"))
}

/// Compile a regex that must match the whole name.
pub fn regex(p: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("bad regex {p:?}: {e}"))
}

impl NameFilter {
    /// A filter from its four lists; `Err((index of the list, message))`.
    pub fn new(
        allow: &[String],
        deny: &[String],
        allow_regex: &[String],
        deny_regex: &[String],
    ) -> Result<NameFilter, (usize, String)> {
        let globs = |l: &[String], i| {
            l.iter()
                .map(|p| glob(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (i, e))
        };
        let res = |l: &[String], i| {
            l.iter()
                .map(|p| regex(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (i, e))
        };
        Ok(NameFilter {
            allow: globs(allow, 0)?,
            deny: globs(deny, 1)?,
            allow_regex: res(allow_regex, 2)?,
            deny_regex: res(deny_regex, 3)?,
        })
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty()
            && self.deny.is_empty()
            && self.allow_regex.is_empty()
            && self.deny_regex.is_empty()
    }

    /// Allowed (by any allow pattern, or by default when there are none) and not denied.
    pub fn accepts(&self, name: &str) -> bool {
        let any_allow = !self.allow.is_empty() || !self.allow_regex.is_empty();
        let allowed = !any_allow
            || self.allow.iter().any(|g| g.is_match(name))
            || self.allow_regex.iter().any(|r| r.is_match(name));
        allowed
            && !self.deny.iter().any(|g| g.is_match(name))
            && !self.deny_regex.iter().any(|r| r.is_match(name))
    }
}

/// A tag as a version, tolerating a `v` prefix and missing minor/patch (`v1.2` = 1.2.0).
pub fn tag_version(tag: &str) -> Option<semver::Version> {
    let t = tag
        .strip_prefix('v')
        .or_else(|| tag.strip_prefix('V'))
        .unwrap_or(tag);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    // 1 or 1.2 (optionally with a pre-release): pad to three numbers.
    let (core, rest) = match t.find(['-', '+']) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 2
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let padded = match parts.len() {
        1 => format!("{}.0.0{rest}", parts[0]),
        _ => format!("{}.{}.0{rest}", parts[0], parts[1]),
    };
    semver::Version::parse(&padded).ok()
}

/// `sha256-<64 hex>` with an optional `.suffix`.
pub fn is_digest_tag(t: &str) -> bool {
    let Some(rest) = t.strip_prefix("sha256-") else {
        return false;
    };
    let hex = rest.split('.').next().unwrap_or("");
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Which tags of a repository a job takes.
#[derive(Clone, Debug, Default)]
pub struct TagSelection {
    /// Exactly these tags (when non-empty), then the filters below.
    pub list: Vec<String>,
    /// Glob and regex allow/deny.
    pub filter: NameFilter,
    /// Only tags whose version (`v` prefix tolerated) satisfies this range.
    pub semver: Option<semver::VersionReq>,
    /// Only the N highest versions (after the other filters); non-version tags drop out.
    pub latest: Option<usize>,
}

impl TagSelection {
    /// Whether the tag list is all a registry needs to be asked: only explicit tags.
    pub fn explicit_only(&self) -> bool {
        !self.list.is_empty()
            && self.filter.is_empty()
            && self.semver.is_none()
            && self.latest.is_none()
    }

    /// The chosen tags among `tags`, in a stable order (versions ascending, then others
    /// by name). Tags naming a digest (`sha256-<hex>`, `sha256-<hex>.sig`: the referrers
    /// fallback and cosign) are taken only when listed: they travel with their subject
    /// when the job copies referrers.
    pub fn select(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<(Option<semver::Version>, String)> = tags
            .iter()
            .filter(|t| {
                if self.list.is_empty() {
                    !is_digest_tag(t)
                } else {
                    self.list.contains(t)
                }
            })
            .filter(|t| self.filter.accepts(t))
            .map(|t| (tag_version(t), t.clone()))
            .filter(|(v, _)| match &self.semver {
                None => true,
                Some(req) => v.as_ref().is_some_and(|v| req.matches(v)),
            })
            .collect();
        out.sort_by(|a, b| match (&a.0, &b.0) {
            (Some(x), Some(y)) => x.cmp(y).then_with(|| a.1.cmp(&b.1)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.1.cmp(&b.1),
        });
        out.dedup_by(|a, b| a.1 == b.1);
        if let Some(n) = self.latest {
            out.retain(|(v, _)| v.is_some());
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
        out.into_iter().map(|(_, t)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn versions() {
        assert_eq!(tag_version("v1.2.3"), Some(semver::Version::new(1, 2, 3)));
        assert_eq!(tag_version("1.2"), Some(semver::Version::new(1, 2, 0)));
        assert_eq!(tag_version("3"), Some(semver::Version::new(3, 0, 0)));
        assert!(tag_version("latest").is_none());
        assert!(tag_version("1.2.3.4").is_none());
        assert_eq!(tag_version("v2.0-rc1").unwrap().pre.as_str(), "rc1");
    }

    #[test]
    fn selection() {
        let tags = s(&[
            "latest",
            "v1.0.0",
            "v1.2.0",
            "v2.0.0",
            "v2.1.0-rc1",
            "1.5",
            "dev-x",
        ]);
        let sel = TagSelection {
            semver: Some(">=1.2, <3".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(sel.select(&tags), s(&["v1.2.0", "1.5", "v2.0.0"]));
        let sel = TagSelection {
            latest: Some(2),
            ..Default::default()
        };
        assert_eq!(sel.select(&tags), s(&["v2.0.0", "v2.1.0-rc1"]));
        let sel = TagSelection {
            filter: NameFilter::new(&s(&["v*"]), &s(&["*-rc*"]), &[], &[]).unwrap(),
            ..Default::default()
        };
        assert_eq!(sel.select(&tags), s(&["v1.0.0", "v1.2.0", "v2.0.0"]));
        let sel = TagSelection {
            filter: NameFilter::new(&[], &[], &s(&["dev-.*|latest"]), &[]).unwrap(),
            ..Default::default()
        };
        assert_eq!(sel.select(&tags), s(&["dev-x", "latest"]));
        let sel = TagSelection {
            list: s(&["latest", "nope"]),
            ..Default::default()
        };
        assert_eq!(sel.select(&tags), s(&["latest"]));
        let sig = format!("sha256-{}.sig", "a".repeat(64));
        assert!(TagSelection::default()
            .select(std::slice::from_ref(&sig))
            .is_empty());
        let sel = TagSelection {
            list: vec![sig.clone()],
            ..Default::default()
        };
        assert_eq!(sel.select(std::slice::from_ref(&sig)), vec![sig]);
        assert!(NameFilter::new(&[], &[], &s(&["("]), &[]).is_err());
    }

    #[test]
    fn globs_stay_in_a_segment() {
        let f = NameFilter::new(&s(&["library/*"]), &[], &[], &[]).unwrap();
        assert!(f.accepts("library/alpine"));
        assert!(!f.accepts("library/x/y"));
        let f = NameFilter::new(&s(&["library/**"]), &[], &[], &[]).unwrap();
        assert!(f.accepts("library/x/y"));
    }
}
