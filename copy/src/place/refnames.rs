//! A layout's index.json entries as repositories and tags, for both layout backends: a ref
//! name `repo:tag` is image `tag` of repository `repo`; a bare `tag` belongs to the
//! repository named after the layout (as `import` names it). Other ref names (a digest, a
//! path-like name) and unnamed entries (referrers) hold no tag.

use std::path::Path;

use sealift_oci::Descriptor;

use super::{unsupported, Head, Reference};
use crate::transport::TransportError;

/// Split a layout ref name into repository and tag; a bare tag gets `default_repo`.
pub fn split_ref_name(name: &str, default_repo: &str) -> Option<(String, String)> {
    match name.rsplit_once(':') {
        Some((r, t)) if !r.is_empty() && !t.contains('/') => Some((r.to_string(), t.to_string())),
        _ if !name.contains('/') && !name.contains(':') => {
            Some((default_repo.to_string(), name.to_string()))
        }
        _ => None,
    }
}

/// A layout's name as a repository, for ref names that are bare tags (as `import` does).
pub fn default_repo(path: &Path) -> String {
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = stem
        .trim_end_matches(".tar")
        .trim_end_matches(".tar.gz")
        .to_ascii_lowercase();
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let clean = clean
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if clean.is_empty() {
        "image".into()
    } else {
        clean
    }
}

/// One tagged image of a layout.
pub struct Named<'a> {
    /// Its repository.
    pub repo: String,
    /// Its tag.
    pub tag: String,
    /// Its index.json entry.
    pub entry: &'a Descriptor,
    /// The ref name as written (what a layout source is opened with).
    pub ref_name: &'a str,
}

/// The tagged images among `entries`, in index.json order.
pub fn named<'a>(entries: &'a [Descriptor], default_repo: &str) -> Vec<Named<'a>> {
    entries
        .iter()
        .filter_map(|e| {
            let name = e.ref_name()?;
            let (repo, tag) = split_ref_name(name, default_repo)?;
            Some(Named {
                repo,
                tag,
                entry: e,
                ref_name: name,
            })
        })
        .collect()
}

/// The repositories among `entries`, sorted, each once.
pub fn repositories(entries: &[Descriptor], default_repo: &str) -> Vec<String> {
    let mut out: Vec<String> = named(entries, default_repo)
        .into_iter()
        .map(|n| n.repo)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The tags of `repo` among `entries`, in index.json order, each once.
pub fn tags(entries: &[Descriptor], default_repo: &str, repo: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in named(entries, default_repo) {
        if n.repo == repo && !out.contains(&n.tag) {
            out.push(n.tag);
        }
    }
    out
}

/// The first entry naming `repo:tag`.
pub fn find<'a>(
    entries: &'a [Descriptor],
    default_repo: &str,
    repo: &str,
    tag: &str,
) -> Option<Named<'a>> {
    named(entries, default_repo)
        .into_iter()
        .find(|n| n.repo == repo && n.tag == tag)
}

/// What `repo:tag`'s entry says, as a [`Head`] (layouts have no ETag). The entry's
/// annotations are dropped: they describe the entry, not the manifest.
pub fn head(entries: &[Descriptor], default_repo: &str, repo: &str, tag: &str) -> Option<Head> {
    find(entries, default_repo, repo, tag).map(|n| Head {
        descriptor: root(n.entry),
        etag: None,
    })
}

/// An entry as an image's root descriptor (without the entry's annotations).
pub fn root(entry: &Descriptor) -> Descriptor {
    let mut d = entry.clone();
    d.annotations.clear();
    d
}

/// The entry a layout source opens for `at`: by tag (layouts name images by ref name; the
/// digest is not used). `shown`: the repository, for errors.
pub fn entry_for<'a>(
    entries: &'a [Descriptor],
    default_repo: &str,
    repo: &str,
    at: &Reference,
    shown: &str,
) -> Result<Named<'a>, TransportError> {
    let Some(tag) = &at.tag else {
        return Err(unsupported(shown, "layout images are read by tag"));
    };
    find(entries, default_repo, repo, tag)
        .ok_or_else(|| TransportError::NotFound(format!("{shown}:{tag}")))
}

/// Layouts do not delete.
pub fn no_delete(shown: &str) -> TransportError {
    unsupported(shown, "layouts do not delete tags")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_split_into_repository_and_tag() {
        assert_eq!(
            split_ref_name("mirror/r0:v1", "x"),
            Some(("mirror/r0".into(), "v1".into()))
        );
        assert_eq!(
            split_ref_name("127.0.0.1:5000/a:b", "x"),
            Some(("127.0.0.1:5000/a".into(), "b".into()))
        );
        assert_eq!(
            split_ref_name("v1", "lay"),
            Some(("lay".into(), "v1".into()))
        );
        assert_eq!(split_ref_name("a/b", "lay"), None);
        assert_eq!(split_ref_name(":v1", "lay"), None);
        assert_eq!(default_repo(Path::new("/x/My Bundle.tar")), "my-bundle");
        assert_eq!(default_repo(Path::new("/x/__.tar")), "image");
    }
}
