//! Layer compression: which one bytes use (sniffed from their magic bytes, for files that
//! carry no media type), and streaming codecs for each, over `std::io` only (async callers
//! run them on a blocking thread over a bridge of their stream).
//!
//! Everything streams with fixed-size buffers: memory does not grow with the layer.

use std::io::{self, BufRead, BufReader, Read, Write};

use crate::digest::{Algorithm, Digest, Hasher};

/// The first bytes of every gzip member.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first bytes of a zstd frame.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// How a layer's (or a tarball's) bytes are compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (possibly multi-member).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// The compression the first bytes of a stream show: gzip or zstd by their magic
    /// numbers, anything else (a tar header, too few bytes) is [`Compression::None`].
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// `none`, `gzip` or `zstd`, as the command line spells them.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A streaming decoder: reads compressed bytes from `R`, yields the uncompressed ones.
/// gzip reads every member, as some tools write several.
pub enum Decoder<R: BufRead> {
    /// Plain bytes, passed through.
    Plain(R),
    /// gzip, every member (boxed: its state is large beside the others).
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    /// zstd.
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Decoder<R> {
    /// Decode `reader`, compressed as `c`.
    pub fn new(reader: R, c: Compression) -> io::Result<Decoder<R>> {
        Ok(match c {
            Compression::None => Decoder::Plain(reader),
            Compression::Gzip => {
                Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
            }
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(reader)?),
        })
    }
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

/// A streaming encoder: takes uncompressed bytes, writes them compressed to `W`. The
/// output depends only on the input (gzip writes mtime 0 and no file name), so the same
/// layer re-encoded twice gets the same digest. Call [`Encoder::finish`] to end the stream.
pub enum Encoder<W: Write> {
    /// Plain bytes, passed through.
    Plain(W),
    /// gzip at the default level.
    Gzip(flate2::write::GzEncoder<W>),
    /// zstd at the default level.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// Encode into `w` as `c`.
    pub fn new(w: W, c: Compression) -> io::Result<Encoder<W>> {
        Ok(match c {
            Compression::None => Encoder::Plain(w),
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            )),
            Compression::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(
                w,
                zstd::DEFAULT_COMPRESSION_LEVEL,
            )?),
        })
    }

    /// Write the end of the stream and return the writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// What [`recompress`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recompressed {
    /// sha256 of the uncompressed bytes (the layer's DiffID).
    pub diff_id: Digest,
    /// sha256 of the bytes written.
    pub digest: Digest,
    /// Bytes written.
    pub size: u64,
}

/// Hashes and counts what passes to `inner`.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    size: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Feeds the uncompressed bytes to the DiffID hasher and the encoder.
struct Tee<'a, W> {
    hasher: &'a mut Hasher,
    out: &'a mut W,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write_all(buf)?;
        self.hasher.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Decompress `reader` (`from`), hashing the uncompressed bytes, while compressing them
/// (`to`) into `out`, hashing what is written. Reads `reader` to its end (so a verifying
/// reader gets to check its digest). Returns the hashes and `out`.
pub fn recompress<R: Read, W: Write>(
    reader: R,
    from: Compression,
    to: Compression,
    out: W,
) -> io::Result<(Recompressed, W)> {
    let mut input = BufReader::with_capacity(1 << 20, reader);
    let mut enc = Encoder::new(
        HashingWriter {
            inner: out,
            hasher: Hasher::new(Algorithm::Sha256),
            size: 0,
        },
        to,
    )?;
    let mut diff = Hasher::new(Algorithm::Sha256);
    io::copy(
        &mut Decoder::new(&mut input, from)?,
        &mut Tee {
            hasher: &mut diff,
            out: &mut enc,
        },
    )?;
    // Whatever follows the compressed stream still belongs to the blob.
    io::copy(&mut input, &mut io::sink())?;
    let mut written = enc.finish()?;
    written.flush()?;
    Ok((
        Recompressed {
            diff_id: diff.finish(),
            digest: written.hasher.finish(),
            size: written.size,
        },
        written.inner,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn sniffs_by_magic_bytes() {
        assert_eq!(Compression::sniff(&gz(b"x")), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&zstd::encode_all(&b"x"[..], 1).unwrap()),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/passwd\0"), Compression::None);
        assert_eq!(Compression::sniff(&[0x1f]), Compression::None);
        assert_eq!(Compression::sniff(&[]), Compression::None);
    }

    #[test]
    fn encoders_and_decoders_round_trip() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 13).to_le_bytes())
            .collect();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut e = Encoder::new(Vec::new(), c).unwrap();
            e.write_all(&data).unwrap();
            let out = e.finish().unwrap();
            assert_eq!(Compression::sniff(&out), c, "{}", c.name());
            let mut back = Vec::new();
            Decoder::new(&out[..], c)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{}", c.name());
        }
    }

    #[test]
    fn recompress_keeps_the_uncompressed_bytes() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        // Two gzip members, as some tools write.
        let mut multi = gz(&data[..1000]);
        multi.extend(gz(&data[1000..]));
        let want = Digest::sha256(&data);
        for (input, from) in [
            (multi.clone(), Compression::Gzip),
            (zstd::encode_all(&data[..], 3).unwrap(), Compression::Zstd),
            (data.clone(), Compression::None),
        ] {
            for to in [Compression::None, Compression::Gzip, Compression::Zstd] {
                let (r, out) = recompress(&input[..], from, to, Vec::new()).unwrap();
                assert_eq!(r.diff_id, want, "{from:?} -> {to:?}");
                assert_eq!(r.digest, Digest::sha256(&out));
                assert_eq!(r.size, out.len() as u64);
                assert_eq!(
                    crate::diffid::diff_id(&out[..], to).unwrap(),
                    want,
                    "{from:?} -> {to:?} decodes back"
                );
            }
        }
    }
}
