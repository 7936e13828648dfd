//! A site inventory: the digests a store holds, so an export can leave out what the site
//! already has (a delta bundle).
//!
//! Format (version 1), all integers big-endian:
//!
//! ```text
//! magic    "sealift-inventory\0"   18 bytes
//! version  u8 = 1
//! count    u64                      number of entries
//! entries  count × (flags u8, raw hash)
//!            flags bit 0-1: algorithm (1 = sha256, 32-byte hash; 2 = sha512, 64 bytes)
//!            flags bit 7:   the digest is a manifest (index or image manifest)
//!          sorted by (algorithm, hash), no duplicates
//! trailer  sha256 of everything above, 32 bytes
//! ```
//!
//! The file's own sha256 names the inventory; a delta bundle records it in index.json's
//! `io.sealift.bundle.base` annotation. Readers refuse files over [`MAX_INVENTORY_SIZE`]
//! and never allocate by the declared count.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use sealift_oci::Digest;
use sealift_store::Store;

use super::error::LayoutError;

const MAGIC: &[u8] = b"sealift-inventory\0";
const VERSION: u8 = 1;
const MANIFEST_FLAG: u8 = 0x80;

/// The largest inventory file read: 256 MiB, about eight million sha256 digests.
pub const MAX_INVENTORY_SIZE: u64 = 256 << 20;

/// What a store holds, by digest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every blob and manifest digest.
    pub digests: HashSet<Digest>,
    /// The subset that are manifests.
    pub manifests: HashSet<Digest>,
    /// sha256 of the encoded file (`sha256:<hex>`): its identity.
    pub id: Option<Digest>,
}

impl Inventory {
    /// Every record in the store.
    pub fn of_store(store: &Store) -> Result<Inventory, LayoutError> {
        let mut inv = Inventory::default();
        for item in store.records() {
            let (d, rec) = item?;
            if rec.manifest {
                inv.manifests.insert(d.clone());
            }
            inv.digests.insert(d);
        }
        Ok(inv)
    }

    /// The version-1 encoding (deterministic: sorted entries).
    pub fn encode(&self) -> Vec<u8> {
        let mut keys: Vec<(Vec<u8>, bool)> = self
            .digests
            .iter()
            .map(|d| (d.to_key(), self.manifests.contains(d)))
            .collect();
        keys.sort();
        let mut out = Vec::with_capacity(MAGIC.len() + 9 + keys.len() * 33 + 32);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(keys.len() as u64).to_be_bytes());
        for (mut k, manifest) in keys {
            if manifest {
                k[0] |= MANIFEST_FLAG;
            }
            out.extend_from_slice(&k);
        }
        let sum = Digest::sha256(&out);
        out.extend(hex_bytes(&sum));
        out
    }

    /// Parse a version-1 inventory, checking its trailer.
    pub fn decode(bytes: &[u8], name: &str) -> Result<Inventory, LayoutError> {
        let bad = |reason: String| LayoutError::BadInventory {
            path: name.to_string(),
            reason,
        };
        let body_len = bytes
            .len()
            .checked_sub(32)
            .filter(|n| *n >= MAGIC.len() + 9)
            .ok_or_else(|| bad("too short to be an inventory".into()))?;
        if !bytes.starts_with(MAGIC) {
            return Err(bad("not a sealift inventory (bad magic)".into()));
        }
        let version = bytes[MAGIC.len()];
        if version != VERSION {
            return Err(bad(format!(
                "inventory format version {version}; this sealift reads version {VERSION}"
            )));
        }
        let (body, trailer) = bytes.split_at(body_len);
        if hex_bytes(&Digest::sha256(body)) != trailer {
            return Err(bad(
                "checksum trailer does not match: file is corrupt".into()
            ));
        }
        let mut count_bytes = [0u8; 8];
        count_bytes.copy_from_slice(&body[MAGIC.len() + 1..MAGIC.len() + 9]);
        let count = u64::from_be_bytes(count_bytes);
        let mut rest = &body[MAGIC.len() + 9..];
        let mut inv = Inventory {
            id: Some(Digest::sha256(bytes)),
            ..Default::default()
        };
        let mut last: Option<Vec<u8>> = None;
        while !rest.is_empty() {
            let flags = rest[0];
            let mut key = rest[..rest.len().min(65)].to_vec();
            key[0] = flags & !MANIFEST_FLAG;
            let (d, used) = Digest::from_key(&key)
                .ok_or_else(|| bad(format!("bad entry at byte {}", body.len() - rest.len())))?;
            let k = key[..used].to_vec();
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(bad("entries are not sorted or repeat".into()));
            }
            last = Some(k);
            if flags & MANIFEST_FLAG != 0 {
                inv.manifests.insert(d.clone());
            }
            inv.digests.insert(d);
            rest = &rest[used..];
        }
        if inv.digests.len() as u64 != count {
            return Err(bad(format!(
                "header says {count} entries, file holds {}",
                inv.digests.len()
            )));
        }
        Ok(inv)
    }

    /// Read an inventory file (bounded by [`MAX_INVENTORY_SIZE`]).
    pub fn read(path: &Path) -> Result<Inventory, LayoutError> {
        let len = fs::metadata(path)
            .map_err(LayoutError::io("reading", path))?
            .len();
        if len > MAX_INVENTORY_SIZE {
            return Err(LayoutError::BadInventory {
                path: path.display().to_string(),
                reason: format!("{len} bytes, over the {MAX_INVENTORY_SIZE}-byte limit"),
            });
        }
        let bytes = fs::read(path).map_err(LayoutError::io("reading", path))?;
        Inventory::decode(&bytes, &path.display().to_string())
    }

    /// Write atomically; returns the inventory's id.
    pub fn write(&self, path: &Path) -> Result<Digest, LayoutError> {
        let bytes = self.encode();
        let tmp = crate::format::tmp_path(path);
        let mut f = fs::File::create(&tmp).map_err(LayoutError::io("creating", &tmp))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(LayoutError::io("writing", &tmp))?;
        fs::rename(&tmp, path).map_err(LayoutError::io("renaming", path))?;
        Ok(Digest::sha256(&bytes))
    }
}

fn hex_bytes(d: &Digest) -> Vec<u8> {
    // A validated digest's hex always decodes.
    hex::decode(d.hex()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let mut inv = Inventory::default();
        for i in 0..50u32 {
            let d = Digest::sha256(&i.to_be_bytes());
            if i % 7 == 0 {
                inv.manifests.insert(d.clone());
            }
            inv.digests.insert(d);
        }
        inv.digests
            .insert(Digest::of(sealift_oci::Algorithm::Sha512, b"x"));
        let bytes = inv.encode();
        assert_eq!(bytes.len(), 18 + 1 + 8 + 50 * 33 + 65 + 32);
        let back = Inventory::decode(&bytes, "t").unwrap();
        assert_eq!(back.digests, inv.digests);
        assert_eq!(back.manifests, inv.manifests);
        assert_eq!(back.id, Some(Digest::sha256(&bytes)));
        assert_eq!(bytes, back.encode(), "encoding is deterministic");

        let mut flipped = bytes.clone();
        flipped[40] ^= 1;
        assert!(Inventory::decode(&flipped, "t").is_err());
        assert!(Inventory::decode(&bytes[..bytes.len() - 1], "t").is_err());
        assert!(Inventory::decode(b"", "t").is_err());
        let mut v2 = bytes.clone();
        v2[18] = 2;
        let e = Inventory::decode(&v2, "t").unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
    }
}
