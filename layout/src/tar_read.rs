//! An OCI layout tarball read in place (plain, gzip or zstd), without extracting it.
//!
//! [`TarLayout::open`] reads the tarball once: every entry is checked (no links, no path
//! escaping, regular files only, one layout per tarball), index.json is read (at most
//! 4 MiB), and each `blobs/<alg>/<hex>` entry's size and data offset are noted. Then a blob
//! is read by digest, refused unless its entry's size is the size its descriptor declares.
//!
//! Random access and what it costs: a plain tar is read by seeking to the entry, so any
//! order is free. A compressed stream cannot seek: to reach an entry, everything before it
//! is decompressed again. To keep that bounded,
//! - the first pass also keeps small JSON entries (manifests and configs: each at most
//!   4 MiB, [`KEEP_BUDGET`] in all) in memory, so the graph walk (index.json, manifests,
//!   configs) never goes back to the file;
//! - a reader that has streamed its blob to the end is parked at that position, and the
//!   next blob further on continues from there instead of from the start. Blobs read in
//!   tar order therefore cost one more decompression pass in total; each blob read before
//!   one already passed costs a new pass from the start up to it (worst case: blobs read in
//!   reverse tar order, one pass per blob: O(blobs × tarball) decompression, CPU only, no
//!   disk); concurrent readers each decompress their own way.
//!
//! Nothing is written to disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sealift_oci::manifest::MAX_MANIFEST_SIZE;
use sealift_oci::{Descriptor, Digest};

use crate::compress::Decompressed;
use crate::entry::{self, EntryPath};
use crate::error::LayoutError;
use crate::format::{self, check_layout_version, read_bounded};

/// How many bytes of small JSON entries a compressed tarball's first pass keeps in memory.
pub const KEEP_BUDGET: u64 = 64 << 20;

/// How many readers parked mid-stream are kept for later blobs.
const PARKED: usize = 4;

/// Where a blob's bytes are in the (decompressed) tar stream.
#[derive(Clone, Debug)]
struct Place {
    offset: u64,
    size: u64,
    entry: String,
}

/// A decompressing reader, `pos` bytes into the tar stream.
struct Cursor {
    reader: Decompressed<File>,
    pos: u64,
}

/// A layout tarball opened for reading.
pub struct TarLayout {
    path: PathBuf,
    compressed: bool,
    entries: Vec<Descriptor>,
    blobs: HashMap<Digest, Place>,
    kept: HashMap<Digest, Arc<[u8]>>,
    parked: Arc<Mutex<Vec<Cursor>>>,
}

/// A tar entry's kind, name for messages and size, after the checks every entry gets;
/// `None` for entries that carry nothing (directories, extension headers).
pub(crate) fn check_entry<R: Read>(
    e: &tar::Entry<'_, R>,
    name: &str,
) -> Result<Option<(EntryPath, String, u64)>, LayoutError> {
    let raw = e.path_bytes().into_owned();
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let et = e.header().entry_type();
    if et.is_symlink() || et.is_hard_link() {
        return Err(LayoutError::UnsafeEntry {
            entry: shown,
            reason: "symlinks and hard links are refused".into(),
        });
    }
    let kind = entry::classify(&raw).map_err(|r| LayoutError::UnsafeEntry {
        entry: shown.clone(),
        reason: r.to_string(),
    })?;
    if et.is_dir()
        || et.is_pax_global_extensions()
        || et.is_pax_local_extensions()
        || et.is_gnu_longname()
    {
        return Ok(None);
    }
    if !(et.is_file() || et.is_contiguous()) {
        return Err(LayoutError::UnsafeEntry {
            entry: shown,
            reason: format!("entry type {:?} is not a regular file", et),
        });
    }
    let size = e.header().size().map_err(|source| LayoutError::Tar {
        path: name.to_string(),
        source,
    })?;
    Ok(Some((kind, shown, size)))
}

/// Refuse a second layout in the same tarball: `prefix` is the folder of the first
/// layout file met.
pub(crate) fn same_layout(prefix: &mut Option<String>, e_path: &[u8]) -> Result<(), LayoutError> {
    let p = entry::prefix(e_path);
    match prefix {
        Some(q) if *q != p => Err(LayoutError::TwoLayouts(q.clone(), p)),
        _ => {
            *prefix = Some(p);
            Ok(())
        }
    }
}

impl TarLayout {
    /// Read the tarball at `path` once (see the module comment).
    pub fn open(path: &Path) -> Result<TarLayout, LayoutError> {
        let shown = path.display().to_string();
        let tar_err = |source| LayoutError::Tar {
            path: shown.clone(),
            source,
        };
        let file = File::open(path).map_err(LayoutError::io("opening", path))?;
        let stream = Decompressed::new(file, &shown)?;
        let compressed = stream.is_compressed();
        let mut archive = tar::Archive::new(stream);
        let mut blobs = HashMap::new();
        let mut kept: HashMap<Digest, Arc<[u8]>> = HashMap::new();
        let mut kept_bytes = 0u64;
        let mut index = None;
        let mut prefix = None;
        for e in archive.entries().map_err(tar_err)? {
            let mut e = e.map_err(tar_err)?;
            let Some((kind, entry, size)) = check_entry(&e, &shown)? else {
                continue;
            };
            match kind {
                EntryPath::Ignored => {}
                EntryPath::IndexJson | EntryPath::OciLayout => {
                    same_layout(&mut prefix, &e.path_bytes())?;
                    let bytes = read_bounded(&mut e, size, &entry).map_err(tar_err)?;
                    if kind == EntryPath::OciLayout {
                        check_layout_version(&bytes, &entry)?;
                    } else {
                        // A later duplicate wins, as tar extraction would have it.
                        index = Some((bytes, entry));
                    }
                }
                EntryPath::Blob(d) => {
                    let offset = e.raw_file_position();
                    kept.remove(&d);
                    if compressed
                        && size <= MAX_MANIFEST_SIZE as u64
                        && kept_bytes + size <= KEEP_BUDGET
                    {
                        let mut buf = Vec::with_capacity(size as usize);
                        (&mut e).take(size).read_to_end(&mut buf).map_err(tar_err)?;
                        if buf.len() as u64 == size && buf.trim_ascii_start().starts_with(b"{") {
                            kept_bytes += size;
                            kept.insert(d.clone(), buf.into());
                        }
                    }
                    blobs.insert(
                        d,
                        Place {
                            offset,
                            size,
                            entry,
                        },
                    );
                }
            }
        }
        let (bytes, entry) = index.ok_or_else(|| LayoutError::MissingIndex(shown.clone()))?;
        let entries = format::parse_index(&bytes, &format!("{shown}/{entry}"))?.manifests;
        Ok(TarLayout {
            path: path.to_path_buf(),
            compressed,
            entries,
            blobs,
            kept,
            parked: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the tarball is compressed (gzip or zstd).
    pub fn is_compressed(&self) -> bool {
        self.compressed
    }

    /// index.json's entries.
    pub fn entries(&self) -> &[Descriptor] {
        &self.entries
    }

    /// Whether the tarball has an entry for `d`.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blobs.contains_key(d)
    }

    /// Blob `desc`'s bytes as a stream of exactly `desc.size` bytes; `None` when the
    /// tarball has no entry for it; refused when the entry's size is not the declared
    /// one. The bytes are not verified here: the caller hashes what it reads.
    pub fn open_blob(
        &self,
        desc: &Descriptor,
    ) -> Result<Option<Box<dyn Read + Send>>, LayoutError> {
        let Some(place) = self.blobs.get(&desc.digest) else {
            return Ok(None);
        };
        if place.size != desc.size {
            return Err(LayoutError::EntrySize {
                entry: place.entry.clone(),
                size: place.size,
                declared: desc.size,
                by: format!("the descriptor of {}", desc.digest),
            });
        }
        if let Some(b) = self.kept.get(&desc.digest) {
            return Ok(Some(Box::new(io::Cursor::new(b.clone()))));
        }
        let shown = || self.path.display().to_string();
        if !self.compressed {
            let mut f = File::open(&self.path).map_err(LayoutError::io("opening", &self.path))?;
            f.seek(io::SeekFrom::Start(place.offset))
                .map_err(LayoutError::io("reading", &self.path))?;
            return Ok(Some(Box::new(f.take(place.size))));
        }
        // The parked reader furthest along that has not passed the entry, else a new one.
        let parked = {
            let mut p = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            let best = p
                .iter()
                .enumerate()
                .filter(|(_, c)| c.pos <= place.offset)
                .max_by_key(|(_, c)| c.pos)
                .map(|(i, _)| i);
            best.map(|i| p.swap_remove(i))
        };
        let mut cursor = match parked {
            Some(c) => c,
            None => {
                let f = File::open(&self.path).map_err(LayoutError::io("opening", &self.path))?;
                Cursor {
                    reader: Decompressed::new(f, &shown())?,
                    pos: 0,
                }
            }
        };
        let skip = place.offset - cursor.pos;
        let skipped =
            io::copy(&mut (&mut cursor.reader).take(skip), &mut io::sink()).map_err(|source| {
                LayoutError::Tar {
                    path: shown(),
                    source,
                }
            })?;
        if skipped != skip {
            return Err(LayoutError::Tar {
                path: shown(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the tarball changed since it was opened",
                ),
            });
        }
        cursor.pos = place.offset;
        Ok(Some(Box::new(BlobReader {
            cursor: Some(cursor),
            left: place.size,
            parked: self.parked.clone(),
        })))
    }

    /// A manifest-sized blob's bytes (at most 4 MiB); `None` when the tarball lacks it.
    pub fn read_small(&self, desc: &Descriptor) -> Result<Option<Vec<u8>>, LayoutError> {
        if desc.size > MAX_MANIFEST_SIZE as u64 {
            return Err(LayoutError::Store(sealift_store::Error::Manifest {
                digest: desc.digest.clone(),
                source: sealift_oci::manifest::ManifestError::TooLarge(desc.size as usize),
            }));
        }
        let Some(mut r) = self.open_blob(desc)? else {
            return Ok(None);
        };
        let mut buf = Vec::with_capacity(desc.size as usize);
        r.read_to_end(&mut buf)
            .map_err(LayoutError::io("reading", &self.path))?;
        Ok(Some(buf))
    }
}

/// One blob's bytes from a decompressing reader; parks the reader once they are all read.
struct BlobReader {
    cursor: Option<Cursor>,
    left: u64,
    parked: Arc<Mutex<Vec<Cursor>>>,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(c) = self.cursor.as_mut() else {
            return Ok(0);
        };
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = c.reader.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tarball ends inside a blob",
            ));
        }
        c.pos += n as u64;
        self.left -= n as u64;
        if self.left == 0 {
            if let Some(c) = self.cursor.take() {
                let mut p = self.parked.lock().unwrap_or_else(|p| p.into_inner());
                if p.len() >= PARKED {
                    // Drop the one furthest behind: later reads are likelier further on.
                    if let Some(i) = p
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, c)| c.pos)
                        .map(|(i, _)| i)
                    {
                        p.swap_remove(i);
                    }
                }
                p.push(c);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index_json;
    use crate::tar_write::TarLayoutWriter;

    /// A zstd layout tarball whose blobs come before index.json; the blobs' descriptors.
    fn zstd_layout(path: &Path, blobs: &[Vec<u8>]) -> Vec<Descriptor> {
        let descs: Vec<Descriptor> = blobs
            .iter()
            .map(|b| {
                Descriptor::new(
                    "application/octet-stream",
                    Digest::sha256(b),
                    b.len() as u64,
                )
            })
            .collect();
        let enc = zstd::stream::write::Encoder::new(File::create(path).unwrap(), 3).unwrap();
        let mut w = TarLayoutWriter::new(enc);
        w.dirs(["sha256"]).unwrap();
        for (d, b) in descs.iter().zip(blobs) {
            w.blob(&d.digest, d.size, &b[..]).unwrap();
        }
        let entries: Vec<_> = descs.iter().map(|d| format::index_entry(d, None)).collect();
        w.index(&index_json(&entries, None)).unwrap();
        w.oci_layout().unwrap();
        w.finish().unwrap().finish().unwrap();
        descs
    }

    fn read_all(t: &TarLayout, d: &Descriptor) -> Vec<u8> {
        let mut out = Vec::new();
        t.open_blob(d)
            .unwrap()
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn compressed_blobs_read_in_any_order_with_readers_parked_between() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.tar.zst");
        let blobs: Vec<Vec<u8>> = (0..4u8)
            .map(|i| vec![i; 100_000 + usize::from(i)])
            .collect();
        let descs = zstd_layout(&p, &blobs);
        let t = TarLayout::open(&p).unwrap();
        assert!(t.is_compressed());
        assert_eq!(t.entries().len(), 4);
        // Backwards, then forwards: each read gives exactly its blob's bytes.
        for i in [3, 1, 0, 2, 3, 0] {
            assert_eq!(read_all(&t, &descs[i]), blobs[i], "blob {i}");
        }
        // Forward reads reuse a parked reader instead of starting again.
        let parked = t.parked.lock().unwrap().len();
        assert!((1..=PARKED).contains(&parked), "{parked}");
    }

    #[test]
    fn a_size_other_than_the_declared_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.tar.zst");
        let descs = zstd_layout(&p, &[vec![7u8; 5000]]);
        let t = TarLayout::open(&p).unwrap();
        let mut wrong = descs[0].clone();
        wrong.size = 4000;
        assert!(matches!(
            t.open_blob(&wrong),
            Err(LayoutError::EntrySize {
                size: 5000,
                declared: 4000,
                ..
            })
        ));
        let absent = Descriptor::new("x", Digest::sha256(b"absent"), 6);
        assert!(t.open_blob(&absent).unwrap().is_none());
    }
}
