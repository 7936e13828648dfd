//! An OCI layout tarball as a source and a sink: async adapters over sealift-layout's
//! [`TarLayout`] (read in place: plain, gzip or zstd) and [`TarLayoutWriter`] (written
//! sequentially to `FILE.partial`, renamed when complete).
//!
//! Reading a compressed tarball: it cannot seek, so [`LayoutTarSource::open`] reads it once
//! (entries checked, index.json read, each blob's place noted, manifests and configs kept in
//! memory up to 64 MiB), and each blob is read by decompressing again from the start or
//! from where an earlier blob read stopped (a parked reader). Blobs read in tar order cost
//! one extra decompression pass in all; a blob before one already read costs a pass from the
//! start up to it; the copy's concurrent blob reads decompress independently (up to its
//! parallelism at once). The cost is CPU, never disk: nothing is extracted. A plain tarball
//! is read by offset, in any order, for free. See sealift_layout::tar_read.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use sealift_layout::format::{index_entry, index_json, tmp_path};
use sealift_layout::{TarLayout, TarLayoutWriter};
use sealift_oci::{Descriptor, Digest};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::layout_dir::{referrers_among, select, tagged_among, tags_among};
use super::verify::Verified;
use super::{BlobStream, Root, Sink, Source, TransportError};

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> TransportError {
    let what = what.to_string();
    move |source| TransportError::Io { what, source }
}

/// A layout tarball (plain, gzip or zstd) read as a source.
pub struct LayoutTarSource {
    layout: Arc<TarLayout>,
    reference: Option<String>,
}

impl LayoutTarSource {
    /// Read the tarball once (see the module comment). Blocking: call it off the runtime.
    pub fn open(
        path: PathBuf,
        reference: Option<String>,
    ) -> Result<LayoutTarSource, TransportError> {
        Ok(LayoutTarSource {
            layout: Arc::new(TarLayout::open(&path)?),
            reference,
        })
    }

    /// The index.json entries (ref names say which images the tarball holds).
    pub fn entries(&self) -> &[Descriptor] {
        self.layout.entries()
    }

    /// The blob's bytes, unverified, read on a blocking thread and handed over in 256 KiB
    /// pieces.
    async fn open_blob(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        let (layout, d) = (self.layout.clone(), desc.clone());
        let reader = tokio::task::spawn_blocking(move || layout.open_blob(&d)).await??;
        let Some(mut reader) = reader else {
            return Err(TransportError::NotFound(format!(
                "{} in {}",
                desc.digest,
                self.describe()
            )));
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || loop {
            let mut buf = vec![0u8; 256 << 10];
            match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        });
        let chunks = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Box::new(StreamReader::new(chunks)))
    }
}

#[async_trait]
impl Source for LayoutTarSource {
    fn describe(&self) -> String {
        format!("oci-archive:{}", self.layout.path().display())
    }

    async fn resolve(&self) -> Result<Root, TransportError> {
        let mut descriptor = select(self.entries(), self.reference.as_deref(), &self.describe())?;
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

    async fn blob_unhashed(&self, desc: &Descriptor) -> Result<BlobStream, TransportError> {
        Ok(Box::new(self.open_blob(desc).await?))
    }

    async fn referrers(&self, subject: &Descriptor) -> Result<Vec<Descriptor>, TransportError> {
        Ok(referrers_among(self, self.entries(), subject).await)
    }

    async fn tags(&self) -> Result<Vec<String>, TransportError> {
        tags_among(self, self.entries(), self.reference.as_deref())
    }

    async fn resolve_tag(&self, tag: &str) -> Result<Root, TransportError> {
        tagged_among(self, self.entries(), self.reference.as_deref(), tag).await
    }
}

struct TarState {
    builder: Option<TarLayoutWriter<File>>,
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
        let mut b = TarLayoutWriter::new(f);
        b.dirs(["sha256"]).map_err(io_err(tmp.display()))?;
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
            b.blob(&desc.digest, desc.size, reader)
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
            b.index(&index_json(&entries, None))
                .map_err(io_err(tmp.display()))?;
            b.oci_layout().map_err(io_err(tmp.display()))?;
            let f = b.finish().map_err(io_err(tmp.display()))?;
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
