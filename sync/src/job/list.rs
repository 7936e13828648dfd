//! Listing a job's source: its repositories (the one it names, or its catalog through the
//! repository filter) and each one's tags through the tag selection. A remote source with
//! an explicit tag list is not listed at all: the tags are checked one by one.

use std::collections::{BTreeMap, HashSet};

use futures_util::stream::{self, StreamExt};

use super::cx::Ctx;

/// Tag lists read at once.
const LISTS_AT_ONCE: usize = 8;

/// One image the source has (or, unlisted, is said to have).
#[derive(Clone, Debug)]
pub(crate) struct Image {
    pub repo: String,
    pub tag: String,
}

/// What listing the source found.
#[derive(Default)]
pub(crate) struct Listing {
    pub images: Vec<Image>,
    /// Every tag of each repository whose complete tag list was read (for prune_gone).
    pub tags: BTreeMap<String, HashSet<String>>,
}

/// A repository's tags (`None`: not listed, the selection names them), or why not.
type TagList = Result<Option<Vec<String>>, String>;

/// List the source; an error stops the job (it is its report's `error`).
pub(crate) async fn list_source(cx: &Ctx<'_>) -> Result<Listing, String> {
    let (job, source) = (cx.job, &cx.places.source);
    if let Some(from) = &job.images_from {
        // The lists name every image: nothing is listed (a tag the source lacks fails its
        // image when checked). Read now, so a daemon follows lists that change.
        let lists = from.clone();
        let images = tokio::task::spawn_blocking(move || lists.images())
            .await
            .map_err(|e| e.to_string())??;
        return Ok(Listing {
            images: images
                .into_iter()
                .map(|(repo, tag)| Image { repo, tag })
                .collect(),
            tags: BTreeMap::new(),
        });
    }
    let repos = match &cx.places.source_repo {
        Some(r) => vec![r.clone()],
        None => {
            let mut all = source.catalog().await.map_err(|e| e.to_string())?;
            all.retain(|r| job.repositories.accepts(r));
            all.sort();
            all
        }
    };
    // Listing a local place costs nothing, and lets a listed tag that is not there be
    // left out rather than fail.
    let list = source.is_local() || !job.tags.explicit_only();
    let lists: Vec<(String, TagList)> = stream::iter(repos)
        .map(|r| async move {
            if !list {
                return (r, Ok(None));
            }
            let t = source.repository(&r).tags().await;
            (r, t.map(Some).map_err(|e| e.to_string()))
        })
        .buffered(LISTS_AT_ONCE)
        .collect()
        .await;
    let mut l = Listing::default();
    for (r, t) in lists {
        let tags = match t? {
            Some(t) => {
                l.tags.insert(r.clone(), t.iter().cloned().collect());
                t
            }
            None => job.tags.list.clone(),
        };
        for tag in job.tags.select(&tags) {
            l.images.push(Image {
                repo: r.clone(),
                tag,
            });
        }
    }
    Ok(l)
}
