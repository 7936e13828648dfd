//! The compressions a layout tarball may have (none, gzip, zstd): detected from the first
//! bytes when reading, chosen by the file name when writing.

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sealift_oci::compression::{Compression, Decoder};

use crate::error::LayoutError;
use crate::format::Format;

/// A tar stream, decompressed as its first bytes say (sealift-oci's sniffing and decoder,
/// the same that DiffIDs and conversion use).
pub struct Decompressed<R: Read> {
    inner: Decoder<BufReader<R>>,
    compression: Compression,
}

impl<R: Read> Decompressed<R> {
    /// Sniff `reader`'s first bytes and decompress accordingly. `name` is for messages.
    pub fn new(reader: R, name: &str) -> Result<Decompressed<R>, LayoutError> {
        let tar_err = |source| LayoutError::Tar {
            path: name.to_string(),
            source,
        };
        let mut buf = BufReader::with_capacity(1 << 20, reader);
        let compression = Compression::sniff(buf.fill_buf().map_err(tar_err)?);
        Ok(Decompressed {
            inner: Decoder::new(buf, compression).map_err(tar_err)?,
            compression,
        })
    }

    /// Whether the stream is compressed (then it cannot be read by offset).
    pub fn is_compressed(&self) -> bool {
        self.compression != Compression::None
    }
}

/// A plain tar over a seekable source skips what it does not read by seeking (tar's
/// `entries_with_seek`): an import's first pass then passes over the large entries it
/// leaves for the second without reading them. Only forward moves from the current
/// position are asked for; a compressed stream cannot seek and refuses.
impl<R: Read + Seek> Seek for Decompressed<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match (&mut self.inner, pos) {
            (Decoder::Plain(r), SeekFrom::Current(_)) => r.seek(pos),
            _ => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only a plain tar can be skipped through by seeking",
            )),
        }
    }
}

/// A source that cannot seek (a pipe, a split bundle's parts), for code that takes
/// `Read + Seek` and seeks only when told the source can.
pub struct NoSeek<R>(pub R);

impl<R: Read> Read for NoSeek<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R> Seek for NoSeek<R> {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this source cannot seek",
        ))
    }
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// `out` wrapped in the compression `format` names (none for a plain tar). Finished
/// explicitly, so an error writing the compressed stream's end is reported, not dropped.
pub enum Compressor<'a> {
    /// A plain tar.
    Plain(&'a mut dyn Write),
    /// gzip.
    Gzip(flate2::write::GzEncoder<&'a mut dyn Write>),
    /// zstd.
    Zstd(zstd::stream::write::Encoder<'static, &'a mut dyn Write>),
}

impl<'a> Compressor<'a> {
    /// Start compressing into `out`; `shown` names the file in messages.
    pub fn new(
        out: &'a mut dyn Write,
        format: Format,
        shown: &Path,
    ) -> Result<Compressor<'a>, LayoutError> {
        Ok(match format {
            Format::TarGz => Compressor::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::fast(),
            )),
            Format::TarZst => Compressor::Zstd(
                zstd::stream::write::Encoder::new(out, 3)
                    .map_err(LayoutError::io("starting zstd for", shown))?,
            ),
            _ => Compressor::Plain(out),
        })
    }

    /// Write the compressed stream's end and flush.
    pub fn finish(self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(g) => g.finish()?.flush(),
            Compressor::Zstd(z) => z.finish()?.flush(),
        }
    }
}

impl Write for Compressor<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Plain(w) => w.write(buf),
            Compressor::Gzip(g) => g.write(buf),
            Compressor::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Plain(w) => w.flush(),
            Compressor::Gzip(g) => g.flush(),
            Compressor::Zstd(z) => z.flush(),
        }
    }
}
