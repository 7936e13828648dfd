//! An OCI layout directory as a source and a sink.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use sealift_oci::media_type as mt;
use sealift_oci::{Descriptor, Digest, ManifestView};
use tokio::io::AsyncWriteExt;

use super::verify::Verified;
use super::{read_capped, BlobStream, Root, Sink, Source, TransportError};
use sealift_layout::export::merge_index;

fn blob_path(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join(d.algorithm().as_str()).join(d.hex())
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> TransportError {
    let what = what.to_string();
    move |source| TransportError::Io { what, source }
}

/// Read a layout's index.json entries.
pub async fn index_entries(dir: &Path) -> Result<Vec<Descriptor>, TransportError> {
    let p = dir.join("index.json");
    let f = tokio::fs::File::open(&p)
        .await
        .map_err(io_err(p.display()))?;
    let bytes = read_capped(f, &p.display().to_string()).await?;
    let view = ManifestView::parse(&bytes, Some(mt::OCI_INDEX)).map_err(|e| {
        TransportError::Layout(sealift_layout::LayoutError::BadLayoutFile {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    })?;
    Ok(view.manifests)
}

/// Pick the index.json entry a ref selects: by ref name, or the only named image.
pub(crate) fn select(
    entries: &[Descriptor],
    reference: Option<&str>,
    what: &str,
) -> Result<Descriptor, TransportError> {
    match reference {
        Some(r) => entries
            .iter()
            .find(|e| e.ref_name() == Some(r))
            .cloned()
            .ok_or_else(|| TransportError::NotFound(format!("{r} in {what}"))),
        None => {
            let named: Vec<&Descriptor> =
                entries.iter().filter(|e| e.ref_name().is_some()).collect();
            let pool: Vec<&Descriptor> = if named.is_empty() {
                entries.iter().collect()
            } else {
                named
            };
            match pool.as_slice() {
                [one] => Ok((*one).clone()),
                [] => Err(TransportError::NotFound(format!("any image in {what}"))),
                many => Err(TransportError::Ambiguous(format!(
                    "{what} holds {} images; name one: {}",
                    many.len(),
                    many.iter()
                        .filter_map(|e| e.ref_name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}

/// A layout directory read as a source.
pub struct LayoutDirSource {
    dir: PathBuf,
    reference: Option<String>,
}

impl LayoutDirSource {
    /// A source for the entry named `reference` (or the only one).
    pub fn new(dir: PathBuf, reference: Option<String>) -> LayoutDirSource {
        LayoutDirSource { dir, reference }
    }

    async fn open_checked(&self, d: &Digest) -> Result<tokio::fs::File, TransportError> {
        let p = blob_path(&self.dir, d);
        let m = tokio::fs::symlink_metadata(&p)
            .await
            .map_err(|_| TransportError::NotFound(format!("{d} in {}", self.dir.display())))?;
        if !m.is_file() {
            return Err(TransportError::Layout(
                sealift_layout::LayoutError::UnsafeFile {
                    path: p.display().to_string(),
                    reason: "not a regular file (symlinks are refused)".into(),
                },
            ));
        }
        tokio::fs::File::open(&p).await.map_err(io_err(p.display()))
    }
}

#[async_trait]
impl Source for LayoutDirSource {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    async fn resolve(&self) -> Result<Root, TransportError> {
        let entries = index_entries(&self.dir).await?;
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

    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError> {
        let entries = index_entries(&self.dir).await?;
        Ok(referrers_among(self, &entries, subject).await)
    }
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
    dir: PathBuf,
    reference: Option<String>,
    root: Mutex<Option<Descriptor>>,
    referrers: Mutex<Vec<(Descriptor, Option<String>)>>,
}

impl LayoutDirSink {
    /// A sink naming its root `reference` in index.json.
    pub fn new(dir: PathBuf, reference: Option<String>) -> Result<LayoutDirSink, TransportError> {
        for alg in ["sha256", "sha512"] {
            let p = dir.join("blobs").join(alg);
            std::fs::create_dir_all(&p).map_err(io_err(p.display()))?;
        }
        Ok(LayoutDirSink {
            dir,
            reference,
            root: Mutex::new(None),
            referrers: Mutex::new(Vec::new()),
        })
    }

    async fn present(&self, desc: &Descriptor) -> bool {
        tokio::fs::symlink_metadata(blob_path(&self.dir, &desc.digest))
            .await
            .is_ok_and(|m| m.is_file() && m.len() == desc.size)
    }

    /// Write on a blocking thread in 1 MiB pieces: tokio's File hands every small write to
    /// the blocking pool, which cost more than the hashing (measured: 132k writes per GiB).
    async fn write(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError> {
        let dest = blob_path(&self.dir, &desc.digest);
        let tmp = PathBuf::from(format!(
            "{}.{:016x}.partial",
            dest.display(),
            rand::random::<u64>()
        ));
        let what = format!("{} ({})", desc.digest, self.describe());
        let reader = tokio_util::io::SyncIoBridge::new(Verified::new(body, desc));
        let result = tokio::task::spawn_blocking(move || {
            let write = || -> Result<(), TransportError> {
                let mut f = std::fs::File::create(&tmp).map_err(io_err(tmp.display()))?;
                let mut r = std::io::BufReader::with_capacity(1 << 20, reader);
                std::io::copy(&mut r, &mut f).map_err(io_err(&what))?;
                f.sync_all().map_err(io_err(tmp.display()))?;
                std::fs::rename(&tmp, &dest).map_err(io_err(dest.display()))?;
                Ok(())
            };
            let r = write();
            if r.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            r
        })
        .await?;
        result
    }
}

#[async_trait]
impl Sink for LayoutDirSink {
    fn describe(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    async fn current(&self) -> Result<Option<Digest>, TransportError> {
        let Some(r) = &self.reference else {
            return Ok(None);
        };
        match index_entries(&self.dir).await {
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
        let dest = blob_path(&self.dir, &desc.digest);
        let tmp = PathBuf::from(format!("{}.partial", dest.display()));
        let mut f = tokio::fs::File::create(&tmp)
            .await
            .map_err(io_err(tmp.display()))?;
        f.write_all(bytes).await.map_err(io_err(tmp.display()))?;
        f.sync_all().await.map_err(io_err(tmp.display()))?;
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(io_err(dest.display()))?;
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
        tokio::task::spawn_blocking(move || merge_index(&dir, &entries)).await??;
        Ok(())
    }
}

/// An index.json entry for `root`, named `reference` when given.
pub(crate) fn index_entry(root: &Descriptor, reference: Option<&str>) -> serde_json::Value {
    let mut e = serde_json::json!({
        "mediaType": root.media_type,
        "digest": root.digest.to_string(),
        "size": root.size,
    });
    if let Some(a) = &root.artifact_type {
        e["artifactType"] = serde_json::Value::String(a.clone());
    }
    if let Some(r) = reference {
        e["annotations"] = serde_json::json!({ mt::ANNOTATION_REF_NAME: r });
    }
    e
}
