//! DiffIDs: the sha256 of a layer's uncompressed tar, as listed in the config's
//! `rootfs.diff_ids`.

use std::io::{self, Read};

use crate::compression::{Compression, Decoder};
use crate::digest::{Algorithm, Digest, Hasher};

/// Decompress (gzip: every member; zstd; none) and hash, streaming.
pub fn diff_id(reader: impl Read, compression: Compression) -> io::Result<Digest> {
    let mut h = Hasher::new(Algorithm::Sha256);
    let buffered = io::BufReader::with_capacity(1 << 20, reader);
    io::copy(&mut Decoder::new(buffered, compression)?, &mut h)?;
    Ok(h.finish())
}

/// ChainIDs from DiffIDs: `chain[0] = diff[0]`, `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn multi_member_gzip() {
        let mut all = Vec::new();
        for part in [&b"hello "[..], b"world"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            all.extend(e.finish().unwrap());
        }
        assert_eq!(
            diff_id(&all[..], Compression::Gzip).unwrap(),
            Digest::sha256(b"hello world")
        );
        let z = zstd::encode_all(&b"hello world"[..], 1).unwrap();
        assert_eq!(
            diff_id(&z[..], Compression::Zstd).unwrap(),
            Digest::sha256(b"hello world")
        );
    }

    #[test]
    fn chain() {
        let a = Digest::sha256(b"a");
        let b = Digest::sha256(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::sha256(format!("{a} {b}").as_bytes()));
    }
}
