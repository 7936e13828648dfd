//! An OCI layout tarball as a source (plain tar, read in place by offset) and a sink
//! (written sequentially to `FILE.partial`, renamed when complete).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use sealift_oci::{Descriptor, Digest, ManifestView};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::SyncIoBridge;

use super::layout_dir::{index_entry, referrers_among, select};
use super::verify::Verified;
use super::{BlobStream, Root, Sink, Source, TransportError};
use sealift_layout::entry::{classify, EntryPath};
use sealift_layout::export::{header, index_json, tmp_path, OCI_LAYOUT};
use sealift_layout::LayoutError;

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> TransportError {
    let what = what.to_string();
    move |source| TransportError::Io { what, source }
}

/// A plain (uncompressed) layout tarball read as a source, blobs read by offset.
pub struct LayoutTarSource {
    path: PathBuf,
    reference: Option<String>,
    blobs: HashMap<Digest, (u64, u64)>,
    index: Vec<Descriptor>,
}

impl LayoutTarSource {
    /// Scan the tarball's headers once (no blob bytes are read).
    pub fn open(
        path: PathBuf,
        reference: Option<String>,
    ) -> Result<LayoutTarSource, TransportError> {
        let shown = path.display().to_string();
        let mut f = File::open(&path).map_err(io_err(&shown))?;
        let mut magic = [0u8; 4];
        let n = f.read(&mut magic).map_err(io_err(&shown))?;
        if magic[..n].starts_with(&[0x1f, 0x8b])
            || magic[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        {
            return Err(TransportError::Unsupported(format!(
                "{shown} is compressed; a compressed oci-archive cannot be read in place: `sealift import` it into the store, then copy from store:"
            )));
        }
        let f = File::open(&path).map_err(io_err(&shown))?;
        let mut archive = tar::Archive::new(f);
        let mut blobs = HashMap::new();
        let mut index_bytes = None;
        let tar_err = |source| LayoutError::Tar {
            path: shown.clone(),
            source,
        };
        for entry in archive.entries().map_err(tar_err)? {
            let mut e = entry.map_err(tar_err)?;
            let raw = e.path_bytes().into_owned();
            let et = e.header().entry_type();
            if et.is_symlink() || et.is_hard_link() {
                return Err(LayoutError::UnsafeEntry {
                    entry: String::from_utf8_lossy(&raw).into_owned(),
                    reason: "symlinks and hard links are refused".into(),
                }
                .into());
            }
            if !et.is_file() {
                continue;
            }
            let kind = classify(&raw).map_err(|r| LayoutError::UnsafeEntry {
                entry: String::from_utf8_lossy(&raw).into_owned(),
                reason: r.to_string(),
            })?;
            match kind {
                EntryPath::Blob(d) => {
                    blobs.insert(d, (e.raw_file_position(), e.size()));
                }
                EntryPath::IndexJson => {
                    let mut b = Vec::new();
                    (&mut e)
                        .take(sealift_oci::manifest::MAX_MANIFEST_SIZE as u64 + 1)
                        .read_to_end(&mut b)
                        .map_err(tar_err)?;
                    index_bytes = Some(b);
                }
                _ => {}
            }
        }
        let bytes = index_bytes.ok_or_else(|| LayoutError::MissingIndex(shown.clone()))?;
        let index = ManifestView::parse(&bytes, Some(sealift_oci::media_type::OCI_INDEX))
            .map_err(|e| LayoutError::BadLayoutFile {
                path: format!("{shown}/index.json"),
                reason: e.to_string(),
            })?
            .manifests;
        Ok(LayoutTarSource {
            path,
            reference,
            blobs,
            index,
        })
    }

    /// The index.json entries (ref names say which images the tarball holds).
    pub fn entries(&self) -> &[Descriptor] {
        &self.index
    }

    async fn open_blob(
        &self,
        desc: &Descriptor,
    ) -> Result<tokio::io::Take<tokio::fs::File>, TransportError> {
        let (offset, size) = *self.blobs.get(&desc.digest).ok_or_else(|| {
            TransportError::NotFound(format!("{} in {}", desc.digest, self.describe()))
        })?;
        let mut f = tokio::fs::File::open(&self.path)
            .await
            .map_err(io_err(self.path.display()))?;
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_err(self.path.display()))?;
        Ok(f.take(size))
    }
}

#[async_trait]
impl Source for LayoutTarSource {
    fn describe(&self) -> String {
        format!("oci-archive:{}", self.path.display())
    }

    async fn resolve(&self) -> Result<Root, TransportError> {
        let mut descriptor = select(&self.index, self.reference.as_deref(), &self.describe())?;
        descriptor.annotations.clear();
        let bytes = self.manifest(&descriptor).await?;
        Ok(Root { descriptor, bytes })
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, TransportError> {
        let r = self.open_blob(desc).await?;
        let bytes = super::read_capped(r, &desc.digest.to_string()).await?;
        super::check_bytes(desc, &bytes)?;
        Ok(bytes)
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        Ok(Box::new(Verified::new(self.open_blob(desc).await?, desc)))
    }

    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError> {
        Ok(referrers_among(self, &self.index, subject).await)
    }
}

struct TarState {
    builder: Option<tar::Builder<File>>,
    written: HashSet<Digest>,
    root: Option<Descriptor>,
    referrers: Vec<(Descriptor, Option<String>)>,
}

/// A layout tarball written as a sink, one blob at a time.
pub struct LayoutTarSink {
    path: PathBuf,
    reference: Option<String>,
    state: Arc<Mutex<TarState>>,
}

impl LayoutTarSink {
    /// Start writing `path` (as `path.partial` until finished).
    pub fn create(
        path: PathBuf,
        reference: Option<String>,
    ) -> Result<LayoutTarSink, TransportError> {
        let n = path.to_string_lossy();
        if n.ends_with(".gz") || n.ends_with(".zst") || n.ends_with(".tgz") {
            return Err(TransportError::Unsupported(format!(
                "{n}: copy writes plain oci-archive tarballs; use `sealift export` for compressed ones"
            )));
        }
        let tmp = tmp_path(&path);
        let f = File::create(&tmp).map_err(io_err(tmp.display()))?;
        let mut b = tar::Builder::new(f);
        b.append_data(&mut header(0, 0o755, true), "blobs/", std::io::empty())
            .map_err(io_err(tmp.display()))?;
        b.append_data(
            &mut header(0, 0o755, true),
            "blobs/sha256/",
            std::io::empty(),
        )
        .map_err(io_err(tmp.display()))?;
        Ok(LayoutTarSink {
            path,
            reference,
            state: Arc::new(Mutex::new(TarState {
                builder: Some(b),
                written: HashSet::new(),
                root: None,
                referrers: Vec::new(),
            })),
        })
    }

    async fn append(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError> {
        let state = self.state.clone();
        let desc = desc.clone();
        let shown = self.describe();
        let reader = SyncIoBridge::new(Verified::new(body, &desc));
        tokio::task::spawn_blocking(move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            if st.written.contains(&desc.digest) {
                return Ok(());
            }
            let b = st.builder.as_mut().ok_or_else(|| {
                TransportError::Unsupported(format!("{shown} is already finished"))
            })?;
            let name = format!(
                "blobs/{}/{}",
                desc.digest.algorithm().as_str(),
                desc.digest.hex()
            );
            b.append_data(&mut header(desc.size, 0o644, false), name, reader)
                .map_err(io_err(format!("{} into {shown}", desc.digest)))?;
            st.written.insert(desc.digest.clone());
            Ok(())
        })
        .await?
    }

    fn has(&self, d: &Digest) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .written
            .contains(d)
    }
}

impl Drop for LayoutTarSink {
    fn drop(&mut self) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.builder.is_some() {
            // Never finished: leave no half-written tarball behind.
            let _ = std::fs::remove_file(tmp_path(&self.path));
        }
    }
}

#[async_trait]
impl Sink for LayoutTarSink {
    fn describe(&self) -> String {
        format!("oci-archive:{}", self.path.display())
    }

    async fn current(&self) -> Result<Option<Digest>, TransportError> {
        Ok(None)
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self.has(&desc.digest))
    }

    async fn put_blob(&self, desc: &Descriptor, body: BlobStream) -> Result<(), TransportError> {
        self.append(desc, body).await
    }

    async fn has_manifest(&self, desc: &Descriptor) -> Result<bool, TransportError> {
        Ok(self.has(&desc.digest))
    }

    async fn put_manifest(
        &self,
        desc: &Descriptor,
        bytes: &[u8],
        _sparse: bool,
    ) -> Result<(), TransportError> {
        super::check_bytes(desc, bytes)?;
        self.append(desc, Box::new(std::io::Cursor::new(bytes.to_vec())))
            .await
    }

    async fn tag(&self, root: &Descriptor) -> Result<(), TransportError> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).root = Some(root.clone());
        Ok(())
    }

    async fn add_referrer(
        &self,
        referrer: &Descriptor,
        _subject: &Descriptor,
    ) -> Result<(), TransportError> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .referrers
            .push((referrer.clone(), None));
        Ok(())
    }

    async fn finish(&self) -> Result<(), TransportError> {
        let state = self.state.clone();
        let path = self.path.clone();
        let reference = self.reference.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            let mut entries: Vec<serde_json::Value> = st
                .root
                .iter()
                .map(|r| index_entry(r, reference.as_deref()))
                .collect();
            entries.extend(
                st.referrers
                    .iter()
                    .map(|(r, n)| index_entry(r, n.as_deref())),
            );
            let Some(mut b) = st.builder.take() else {
                return Ok(());
            };
            let tmp = tmp_path(&path);
            let index = index_json(&entries);
            b.append_data(
                &mut header(index.len() as u64, 0o644, false),
                "index.json",
                &index[..],
            )
            .map_err(io_err(tmp.display()))?;
            b.append_data(
                &mut header(OCI_LAYOUT.len() as u64, 0o644, false),
                "oci-layout",
                OCI_LAYOUT,
            )
            .map_err(io_err(tmp.display()))?;
            let f = b.into_inner().map_err(io_err(tmp.display()))?;
            f.sync_all().map_err(io_err(tmp.display()))?;
            std::fs::rename(&tmp, &path).map_err(io_err(path.display()))?;
            Ok(())
        })
        .await?
    }

    fn parallelism(&self) -> usize {
        1
    }
}
