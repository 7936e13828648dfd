//! Small state kept for the store's users (the sync jobs' per-tag state and run reports) in
//! its own metadata tree, `state`, so it lives and is backed up with the store it describes.
//!
//! Keys are namespaced: `namespace ++ 0x00 ++ key`. Values are the schema-version byte
//! followed by JSON, so a record can gain fields (read with `#[serde(default)]`) without a
//! migration. Nothing here is a GC root: state describes content, it never holds it.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::SCHEMA_VERSION;
use crate::store::Store;

const TREE: &str = "state";

fn full_key(ns: &str, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 1 + key.len());
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(key);
    k
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.first() {
        Some(&SCHEMA_VERSION) => {}
        Some(&found) => {
            return Err(Error::SchemaVersion {
                found,
                expected: SCHEMA_VERSION,
            })
        }
        None => {
            return Err(Error::Corrupt {
                tree: TREE,
                reason: "empty value".into(),
            })
        }
    }
    serde_json::from_slice(&bytes[1..]).map_err(|e| Error::Corrupt {
        tree: TREE,
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_VERSION];
    // Plain structs with string keys always serialise.
    out.extend(serde_json::to_vec(v).unwrap_or_default());
    out
}

impl Store {
    fn state_tree(&self) -> Result<crate::kv::Tree> {
        Ok(self.db.open_tree(TREE)?)
    }

    /// The record under `ns`/`key`, if any.
    pub fn state_get<T: DeserializeOwned>(&self, ns: &str, key: &[u8]) -> Result<Option<T>> {
        self.state_tree()?
            .get(full_key(ns, key))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Write the record under `ns`/`key`.
    pub fn state_put<T: Serialize>(&self, ns: &str, key: &[u8], value: &T) -> Result<()> {
        self.state_tree()?
            .insert(full_key(ns, key), encode(value))?;
        Ok(())
    }

    /// Remove the record under `ns`/`key`; whether there was one.
    pub fn state_remove(&self, ns: &str, key: &[u8]) -> Result<bool> {
        Ok(self.state_tree()?.remove(full_key(ns, key))?.is_some())
    }

    /// Every record of `ns` whose key starts with `prefix`, in key order, as
    /// `(key without the namespace, record)`.
    pub fn state_scan<T: DeserializeOwned>(
        &self,
        ns: &str,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, T)>> {
        let tree = self.state_tree()?;
        let skip = ns.len() + 1;
        let mut out = Vec::new();
        for item in tree.scan_prefix(full_key(ns, prefix)) {
            let (k, v) = item?;
            out.push((k[skip..].to_vec(), decode(&v)?));
        }
        Ok(out)
    }

    /// Make state writes durable (they are otherwise flushed within the metadata's half-second interval).
    pub fn state_flush(&self) -> Result<()> {
        self.state_tree()?.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct R {
        n: u32,
    }

    #[test]
    fn namespaced_records() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.state_put("a", b"k1", &R { n: 1 }).unwrap();
        s.state_put("a", b"k2", &R { n: 2 }).unwrap();
        s.state_put("ab", b"k1", &R { n: 3 }).unwrap();
        assert_eq!(s.state_get::<R>("a", b"k1").unwrap(), Some(R { n: 1 }));
        let all: Vec<(Vec<u8>, R)> = s.state_scan("a", b"").unwrap();
        assert_eq!(all.len(), 2, "namespace 'ab' does not leak into 'a'");
        assert_eq!(all[1], (b"k2".to_vec(), R { n: 2 }));
        assert!(s.state_remove("a", b"k1").unwrap());
        assert_eq!(s.state_get::<R>("a", b"k1").unwrap(), None);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.state_get::<R>("ab", b"k1").unwrap(), Some(R { n: 3 }));
    }
}
