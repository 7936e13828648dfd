//! An OCI layout directory as a source and a sink: async adapters over
//! [`sealift_layout::LayoutDir`], which owns the format (index.json, blob paths and their
//! safety, atomic writes, merging index.json). Blocking file work runs on tokio's blocking
//! pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use sealift_layout::format::{index_entry, Selection};
use sealift_layout::LayoutDir;
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, ManifestView};

use super::verify::Verified;
use super::{read_capped, BlobStream, Root, Sink, Source, TransportError};

/// Read a layout's index.json entries.
pub async fn index_entries(dir: &Path) -> Result<Vec<Descriptor>, TransportError> {
    let layout = LayoutDir::new(dir);
    Ok(tokio::task::spawn_blocking(move || layout.entries()).await??)
}

/// Pick the index.json entry a ref selects: by ref name, or the only named image.
pub(crate) fn select(
    entries: &[Descriptor],
    reference: Option<&str>,
    what: &str,
) -> Result<Descriptor, TransportError> {
    match sealift_layout::format::select(entries, reference) {
        Selection::Found(d) => Ok(*d),
        Selection::None => Err(TransportError::NotFound(match reference {
            Some(r) => format!("{r} in {what}"),
            None => format!("any image in {what}"),
        })),
        Selection::Many(names) => Err(TransportError::Ambiguous(format!(
            "{what} holds {} images; name one: {}",
            names.len(),
            names.join(", ")
        ))),
    }
}

/// A layout directory read as a source.
pub struct LayoutDirSource {
    dir: LayoutDir,
    reference: Option<String>,
}

impl LayoutDirSource {
    /// A source for the entry named `reference` (or the only one).
    pub fn new(dir: PathBuf, reference: Option<String>) -> LayoutDirSource {
        LayoutDirSource {
            dir: LayoutDir::new(dir),
            reference,
        }
    }

    async fn open_checked(&self, d: &Digest) -> Result<tokio::fs::File, TransportError> {
        let (dir, digest) = (self.dir.clone(), d.clone());
        match tokio::task::spawn_blocking(move || dir.open_blob(&digest)).await?? {
            Some(f) => Ok(tokio::fs::File::from_std(f)),
            None => Err(TransportError::NotFound(format!(
                "{d} in {}",
                self.dir.path().display()
            ))),
        }
    }
}

#[async_trait]
impl Source for LayoutDirSource {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.path().display())
    }

    async fn resolve(&self) -> Result<Root, TransportError> {
        let entries = index_entries(self.dir.path()).await?;
        let mut descriptor = select(&entries, self.reference.as_deref(), &self.describe())?;
        descriptor.annotations.clear();
        let bytes = self.manifest(&descriptor).await?;
        Ok(Root { descriptor, bytes })
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError> {
        let f = self.open_checked(&desc.digest).await?;
        let bytes = read_capped(f, &desc.digest.to_string()).await?;
        super::check_bytes(desc, &bytes)?;
        Ok(bytes)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        let f = self.open_checked(&desc.digest).await?;
        Ok(Box::new(Verified::new(f, desc)))
    }

    async fn blob_unhashed(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        Ok(Box::new(self.open_checked(&desc.digest).await?))
    }

    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError> {
        let entries = index_entries(self.dir.path()).await?;
        Ok(referrers_among(self, &entries, subject).await)
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        let entries = index_entries(self.dir.path()).await?;
        tags_among(self, &entries, self.reference.as_deref())
    }

    async fn resolve_tag(&self, tag: &str) -> Result<Root, TransportError> {
        let entries = index_entries(self.dir.path()).await?;
        tagged_among(self, &entries, self.reference.as_deref(), tag).await
    }
}

/// [`Source::tags`] of a layout source whose index holds `entries` and which reads the
/// entry named `reference`: the tags of that entry's repository.
pub(crate) fn tags_among(
    src: &dyn Source,
    entries: &[Descriptor],
    reference: Option<&str>,
) -> Result<Vec<String>, TransportError> {
    let selected = select(entries, reference, &src.describe())?;
    Ok(sibling_tags(entries, &selected))
}

/// [`Source::resolve_tag`] of such a source: the entry tagged `tag` in that repository.
pub(crate) async fn tagged_among(
    src: &dyn Source,
    entries: &[Descriptor],
    reference: Option<&str>,
    tag: &str,
) -> Result<Root, TransportError> {
    let selected = select(entries, reference, &src.describe())?;
    let descriptor = sibling(entries, &selected, tag)
        .ok_or_else(|| TransportError::NotFound(format!("{tag} in {}", src.describe())))?;
    let bytes = src.manifest(&descriptor).await?;
    Ok(Root { descriptor, bytes })
}

/// `(repository, tag)` of a layout ref name: `repo:tag`, or a bare tag (repository "").
fn split_name(name: &str) -> (&str, &str) {
    match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => ("", name),
    }
}

/// The tags of the repository the `selected` entry belongs to, as a registry lists its
/// repository's tags: how cosign's `sha256-<hex>.sig` signature manifests are found in a
/// layout, where `export --referrers` writes them as entries named `repo:sha256-<hex>.sig`.
fn sibling_tags(entries: &[Descriptor], selected: &Descriptor) -> Vec<String> {
    let Some(repo) = selected.ref_name().map(|n| split_name(n).0) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|e| e.ref_name().map(split_name))
        .filter(|(r, _)| *r == repo)
        .map(|(_, t)| t.to_string())
        .collect()
}

/// The entry tagged `tag` in the `selected` entry's repository, as a root descriptor.
fn sibling(entries: &[Descriptor], selected: &Descriptor, tag: &str) -> Option<Descriptor> {
    let repo = split_name(selected.ref_name()?).0;
    let mut d = entries
        .iter()
        .find(|e| e.ref_name().map(split_name) == Some((repo, tag)))?
        .clone();
    d.annotations.clear();
    Some(d)
}

/// The index.json entries of a layout whose manifest names `subject`: layouts have no
/// referrers index, so the entries are read and their `subject` compared.
pub(crate) async fn referrers_among(
    src: &dyn Source,
    entries: &[Descriptor],
    subject: &Descriptor,
) -> Vec<Descriptor> {
    let mut out = Vec::new();
    for e in entries {
        if !mt::is_manifest(&e.media_type) || e.digest == subject.digest {
            continue;
        }
        let Ok(bytes) = src.manifest(e).await else {
            continue;
        };
        if let Ok(v) = ManifestView::parse(&bytes, Some(&e.media_type)) {
            if v.subject
                .as_ref()
                .is_some_and(|s| s.digest == subject.digest)
            {
                let mut d = Descriptor::new(e.media_type.clone(), e.digest.clone(), e.size);
                d.artifact_type = v.effective_artifact_type();
                out.push(d);
            }
        }
    }
    out
}

/// A layout directory written as a sink. index.json is merged when the copy finishes.
pub struct LayoutDirSink {
    dir: LayoutDir,
    reference: Option<String>,
    root: Mutex<Option<Descriptor>>,
    referrers: Mutex<Vec<(Descriptor, Option<String>)>>,
}

impl LayoutDirSink {
    /// A sink naming its root `reference` in index.json.
    pub fn new(dir: PathBuf, reference: Option<String>) -> Result<LayoutDirSink, TransportError> {
        Ok(LayoutDirSink {
            dir: LayoutDir::create(dir)?,
            reference,
            root: Mutex::new(None),
            referrers: Mutex::new(Vec::new()),
        })
    }

    async fn present(&self, desc: &Descriptor) -> bool {
        let (dir, d) = (self.dir.clone(), desc.clone());
        tokio::task::spawn_blocking(move || dir.has_blob(&d.digest, d.size))
            .await
            .unwrap_or(false)
    }

    /// Write on a blocking thread in 1 MiB pieces: tokio's File hands every small write to
    /// the blocking pool, which cost more than the hashing (measured: 132k writes per GiB).
    async fn write(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError> {
        let (dir, d) = (self.dir.clone(), desc.digest.clone());
        let mut reader = tokio_util::io::SyncIoBridge::new(Verified::new(body, desc));
        tokio::task::spawn_blocking(move || dir.write_blob(&d, &mut reader)).await??;
        Ok(())
    }
}

#[async_trait]
impl Sink for LayoutDirSink {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.path().display())
    }

    async fn current(&self) -> Result<Option<Digest>, TransportError> {
        let Some(r) = &self.reference else {
            return Ok(None);
        };
        match index_entries(self.dir.path()).await {
            Ok(entries) => Ok(entries
                .iter()
                .find(|e| e.ref_name() == Some(r.as_str()))
                .map(|e| e.digest.clone())),
            Err(_) => Ok(None),
        }
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self.present(desc).await)
    }

    async fn put_blob(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError> {
        self.write(desc, body).await
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self.present(desc).await)
    }

    async fn put_manifest(
        &self,
        desc: &Descriptor,
        bytes: &[u8],
        _sparse: bool,
    ) -> Result<(), TransportError> {
        super::check_bytes(desc, bytes)?;
        let (dir, d, bytes) = (self.dir.clone(), desc.digest.clone(), bytes.to_vec());
        tokio::task::spawn_blocking(move || dir.write_manifest(&d, &bytes)).await??;
        Ok(())
    }

    async fn tag(&self, root: &Descriptor) -> Result<(), TransportError> {
        *self.root.lock().unwrap_or_else(|p| p.into_inner()) = Some(root.clone());
        Ok(())
    }

    async fn add_referrer(
        &self,
        referrer: &Descriptor,
        _subject: &Descriptor,
    ) -> Result<(), TransportError> {
        self.referrers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((referrer.clone(), None));
        Ok(())
    }

    async fn finish(&self) -> Result<(), TransportError> {
        let root = self.root.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(root) = root else { return Ok(()) };
        let mut entries = vec![index_entry(&root, self.reference.as_deref())];
        entries.extend(
            self.referrers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(r, n)| index_entry(r, n.as_deref())),
        );
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || dir.merge_index(&entries)).await??;
        Ok(())
    }
}
