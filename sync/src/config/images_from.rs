//! A job's `images_from = ["FILE", …]`: the images to copy, read from Kubernetes manifests
//! or text lists (`sealift_layout::image_list`) when the config is loaded, instead of the
//! source's repositories and tags.
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

/// The images a job's lists name, for its source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImagesFrom {
    /// The files, resolved against the config's directory.
    pub files: Vec<PathBuf>,
    /// Each image once, in first-seen order: (repository at the source, tag).
    pub images: Vec<(String, String)>,
}

/// Check `images_from` against the job's source; `None` when the key is absent.
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
        Place::Registry { host, repo: None } => Some(host.as_str()),
        Place::Store { repo: None } => None,
        _ => {
            return Err(cx.at(
                files,
                key,
                format!("takes a source of docker://HOST or store: (the list names the repositories), not {source}"),
            ))
        }
    };
    let mut out = ImagesFrom {
        files: Vec::new(),
        images: Vec::new(),
    };
    let mut others = std::collections::BTreeSet::new();
    for f in files.get_ref() {
        if f.get_ref().is_empty() {
            return Err(cx.at(f, key, "empty path".into()));
        }
        let path = resolve(f.get_ref());
        let listed = image_list::read_list(&path).map_err(|e| cx.at(f, key, e.to_string()))?;
        for image in listed {
            let tag = tag_of(&image).map_err(|m| cx.at(f, key, m))?;
            let repo = match host {
                Some(h) if image.host != h => {
                    others.insert(image.host.clone());
                    continue;
                }
                Some(_) => image.repo.clone(),
                None => format!("{}/{}", image.host, image.repo),
            };
            if !out.images.iter().any(|(r, t)| *r == repo && *t == tag) {
                out.images.push((repo, tag));
            }
        }
        out.files.push(path);
    }
    if out.images.is_empty() {
        let others: Vec<String> = others.into_iter().collect();
        return Err(cx.at(
            files,
            key,
            format!(
                "the lists name no image of {} (they name images of {})",
                host.unwrap_or("any registry"),
                if others.is_empty() {
                    "none".into()
                } else {
                    others.join(", ")
                }
            ),
        ));
    }
    Ok(Some(out))
}

fn tag_of(image: &ImageRef) -> Result<String, String> {
    image.tag.as_ref().map(ToString::to_string).ok_or_else(|| {
        format!("{image}: a sync job copies tags; write the tag too (REPO:TAG@DIGEST), or use `sealift copy` for a digest")
    })
}
