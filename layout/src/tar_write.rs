//! An OCI layout tarball written as a stream: reproducible entries (uid/gid 0, mtime 0,
//! fixed modes). Compression and where the bytes go (a `.partial` file, split parts) are
//! the caller's: this only lays out the entries.

use std::io::{self, Read, Write};

use sealift_oci::Digest;

use crate::format::{blob_name, header, OCI_LAYOUT};

/// Writes the entries of a layout tarball into `W`.
pub struct TarLayoutWriter<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> TarLayoutWriter<W> {
    /// Start a tarball in `out`.
    pub fn new(out: W) -> TarLayoutWriter<W> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        TarLayoutWriter { builder }
    }

    /// The `oci-layout` file.
    pub fn oci_layout(&mut self) -> io::Result<()> {
        self.file("oci-layout", OCI_LAYOUT)
    }

    /// index.json with these bytes (see [`crate::format::index_json`]).
    pub fn index(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file("index.json", bytes)
    }

    /// The directory entries `blobs/` and `blobs/<alg>/` for each algorithm named.
    pub fn dirs<'a>(&mut self, algs: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        self.builder
            .append_data(&mut header(0, 0o755, true), "blobs/", io::empty())?;
        for alg in algs {
            self.builder.append_data(
                &mut header(0, 0o755, true),
                format!("blobs/{alg}/"),
                io::empty(),
            )?;
        }
        Ok(())
    }

    /// Blob `d` of `size` bytes read from `body` (which must yield exactly that many).
    pub fn blob(&mut self, d: &Digest, size: u64, body: impl Read) -> io::Result<()> {
        self.builder
            .append_data(&mut header(size, 0o644, false), blob_name(d), body)
    }

    fn file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.builder
            .append_data(&mut header(bytes.len() as u64, 0o644, false), name, bytes)
    }

    /// Write the tar's end and hand back the output.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}
