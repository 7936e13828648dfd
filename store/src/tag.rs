//! Tags and pins: the GC roots users name. Both link the whole graph first.

use crate::error::{Error, Result};
use crate::record::{self, now, TagRecord};
use crate::store::Store;
use sealift_oci::digest::Digest;
use sealift_oci::reference::{Repo, StoreRef, Tag};

/// One tag in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagEntry {
    /// Repository.
    pub repo: Repo,
    /// Tag.
    pub tag: Tag,
    /// Target.
    pub digest: Digest,
    /// Unix seconds of the last change.
    pub updated: u64,
}

fn tag_key(repo: &Repo, tag: &Tag) -> Vec<u8> {
    let mut k = repo.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend(tag.as_str().as_bytes());
    k
}

impl Store {
    /// Point `repo:tag` at `digest`, only once its whole graph is present. Every node of the
    /// graph is stamped with the current GC epoch first, so a collection that started
    /// before this tag existed cannot take any of it.
    pub fn set_tag(&self, repo: &Repo, tag: &Tag, digest: &Digest) -> Result<()> {
        let _g = self.gate_shared();
        self.link_graph(digest)?;
        let rec = TagRecord {
            digest: digest.to_string(),
            updated: now(),
        };
        self.tags.insert(tag_key(repo, tag), record::encode(&rec))?;
        self.db.flush()?;
        Ok(())
    }

    /// Remove a tag. Returns whether it existed.
    pub fn remove_tag(&self, repo: &Repo, tag: &Tag) -> Result<bool> {
        let r = self.tags.remove(tag_key(repo, tag))?.is_some();
        self.db.flush()?;
        Ok(r)
    }

    /// All tags, sorted by repo then tag.
    pub fn tags(&self) -> Result<Vec<TagEntry>> {
        let mut out = Vec::new();
        for item in self.tags.iter() {
            let (k, v) = item?;
            let r: TagRecord = record::decode("tags", &v)?;
            let corrupt = |reason: &str| Error::Corrupt {
                tree: "tags",
                reason: reason.to_string(),
            };
            let s = std::str::from_utf8(&k).map_err(|_| corrupt("non-UTF-8 key"))?;
            let (repo, tag) = s
                .split_once('\0')
                .ok_or_else(|| corrupt("key without separator"))?;
            out.push(TagEntry {
                repo: repo.parse()?,
                tag: tag.parse()?,
                digest: r.digest.parse().map_err(|_| corrupt("bad digest"))?,
                updated: r.updated,
            });
        }
        Ok(out)
    }

    /// The digest a reference names. A digest reference must be in the store.
    pub fn resolve(&self, r: &StoreRef) -> Result<Digest> {
        if let Some(d) = &r.digest {
            return match self.record(d)? {
                Some(_) => Ok(d.clone()),
                None => Err(Error::UnknownRef(r.to_string())),
            };
        }
        let tag = r
            .tag
            .clone()
            .unwrap_or_else(|| "latest".parse().expect("valid tag"));
        match self.tags.get(tag_key(&r.repo, &tag))? {
            Some(v) => {
                let t: TagRecord = record::decode("tags", &v)?;
                t.digest.parse().map_err(|_| Error::Corrupt {
                    tree: "tags",
                    reason: format!("bad digest for {r}"),
                })
            }
            None => Err(Error::UnknownRef(r.to_string())),
        }
    }

    /// Pin a digest: a GC root without a tag.
    pub fn pin(&self, digest: &Digest) -> Result<()> {
        let _g = self.gate_shared();
        self.link_graph(digest)?;
        self.pins.insert(digest.to_key(), record::encode(&now()))?;
        self.db.flush()?;
        Ok(())
    }

    /// Remove a pin. Returns whether it existed.
    pub fn unpin(&self, digest: &Digest) -> Result<bool> {
        Ok(self.pins.remove(digest.to_key())?.is_some())
    }

    /// All pinned digests.
    pub fn pins(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for item in self.pins.iter() {
            let (k, _) = item?;
            if let Some((d, _)) = Digest::from_key(&k) {
                out.push(d);
            }
        }
        Ok(out)
    }
}
