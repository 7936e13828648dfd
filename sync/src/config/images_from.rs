//! A job's `images_from = ["FILE", …]`: the images to copy, read from Kubernetes manifests
//! or text lists (`sealift_layout::image_list`) instead of the source's repositories and
//! tags: checked when the config is loaded (an error points at the file's entry), read
//! again at every run.
//!
//! With a registry source (`docker://HOST`) the job takes the listed images of HOST (one job
//! per registry; a list naming none of HOST's images is an error); with a store source
//! (`store:`) every listed image, as `pull` files it (`HOST/REPO:TAG`). A job copies tags:
//! an entry with a digest must also name its tag, and the tag is what is copied (the
//! digest is honoured by `export --images-from`, not by a sync job).

use std::path::PathBuf;

use toml::Spanned;

use sealift_layout::image_list;
use sealift_oci::ImageRef;

use super::error::{ConfigError, Cx};
use super::place::Place;

/// A job's image lists, checked against its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagesFrom {
    /// The files, resolved against the config's directory.
    pub files: Vec<PathBuf>,
    /// With a registry source, its host: only the lists' images of it are taken.
    pub host: Option<String>,
}

impl ImagesFrom {
    /// The images the lists name now, each once in first-seen order: (repository at the
    /// source, tag). Read at every run, so a daemon follows the lists as they change.
    pub fn images(&self) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        let mut others = std::collections::BTreeSet::new();
        for f in &self.files {
            self.read_into(f, &mut out, &mut others)?;
        }
        self.none_is_an_error(&out, &others)?;
        Ok(out)
    }

    /// The registry hosts of the images the lists name now (for a registry source, its
    /// host), for `mirror-config --job`.
    pub fn hosts(&self) -> Result<std::collections::BTreeSet<String>, String> {
        if let Some(h) = &self.host {
            return Ok([h.clone()].into_iter().collect());
        }
        Ok(self
            .images()?
            .into_iter()
            .filter_map(|(repo, _)| repo.split_once('/').map(|(h, _)| h.to_string()))
            .collect())
    }

    fn read_into(
        &self,
        path: &std::path::Path,
        out: &mut Vec<(String, String)>,
        others: &mut std::collections::BTreeSet<String>,
    ) -> Result<(), String> {
        for image in image_list::read_list(path).map_err(|e| e.to_string())? {
            let tag = tag_of(&image)?;
            let repo = match &self.host {
                Some(h) if image.host != *h => {
                    others.insert(image.host.clone());
                    continue;
                }
                Some(_) => image.repo.clone(),
                None => format!("{}/{}", image.host, image.repo),
            };
            if !out.iter().any(|(r, t)| *r == repo && *t == tag) {
                out.push((repo, tag));
            }
        }
        Ok(())
    }

    fn none_is_an_error(
        &self,
        out: &[(String, String)],
        others: &std::collections::BTreeSet<String>,
    ) -> Result<(), String> {
        if !out.is_empty() {
            return Ok(());
        }
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        Err(format!(
            "the lists name no image of {} (they name images of {})",
            self.host.as_deref().unwrap_or("any registry"),
            if others.is_empty() {
                "none".into()
            } else {
                others.join(", ")
            }
        ))
    }
}

/// Check `images_from` against the job's source, reading each list once so that an error
/// points at its entry; `None` when the key is absent.
pub(crate) fn parse(
    cx: &Cx<'_>,
    key: &str,
    files: Option<&Spanned<Vec<Spanned<String>>>>,
    source: &Place,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Option<ImagesFrom>, ConfigError> {
    let Some(files) = files else {
        return Ok(None);
    };
    if files.get_ref().is_empty() {
        return Err(cx.at(files, key, "names no file".into()));
    }
    let host = match source {
        Place::Registry { host, repo: None } => Some(host.clone()),
        Place::Store { repo: None } => None,
        _ => {
            return Err(cx.at(
                files,
                key,
                format!("takes a source of docker://HOST or store: (the list names the repositories), not {source}"),
            ))
        }
    };
    let mut from = ImagesFrom {
        files: Vec::new(),
        host,
    };
    let (mut images, mut others) = (Vec::new(), std::collections::BTreeSet::new());
    for f in files.get_ref() {
        if f.get_ref().is_empty() {
            return Err(cx.at(f, key, "empty path".into()));
        }
        let path = resolve(f.get_ref());
        from.read_into(&path, &mut images, &mut others)
            .map_err(|m| cx.at(f, key, m))?;
        from.files.push(path);
    }
    from.none_is_an_error(&images, &others)
        .map_err(|m| cx.at(files, key, m))?;
    Ok(Some(from))
}

fn tag_of(image: &ImageRef) -> Result<String, String> {
    image.tag.as_ref().map(ToString::to_string).ok_or_else(|| {
        format!("{image}: a sync job copies tags; write the tag too (REPO:TAG@DIGEST), or use `sealift copy` for a digest")
    })
}
