//! Records kept in the metadata trees, each encoded as one schema-version byte followed by bincode.
//!
//! The version byte lets a later sealift refuse (or migrate) a store it does not understand,
//! instead of misreading it.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};
use sealift_oci::digest::Digest;
use sealift_oci::manifest::Role;

/// Version of every record encoding in this build. Bump on any incompatible change and say
/// so in ARCHITECTURE.md.
pub const SCHEMA_VERSION: u8 = 1;

/// What the store knows of one blob or manifest whose bytes are durable under `blobs/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// Size in bytes, verified on ingest.
    pub size: u64,
    /// Media type it was first stored under (descriptors elsewhere may differ; the bytes are
    /// the identity).
    pub media_type: String,
    /// Whether the bytes are a manifest or index with recorded edges.
    pub manifest: bool,
    /// Unix seconds when first stored.
    pub created: u64,
    /// GC epoch of the last hold or link; GC never deletes a record touched in its own epoch.
    pub touched: u64,
    /// Whether anything (a manifest, a tag, a pin) has ever pointed at it. Unlinked blobs
    /// get a grace period, linked ones do not.
    pub linked: bool,
    /// For referrers: the manifest named by `subject`.
    pub subject: Option<String>,
    /// For manifests: the artifact type shown in referrers lists.
    pub artifact_type: Option<String>,
}

/// A [`BlobRecord`] read without allocating: the same fields in the same order (bincode
/// writes a struct as its fields in order, so the two decode the same bytes), strings
/// borrowed from the stored value. GC reads every record and needs only a few fields.
/// The test below keeps the two in step.
#[derive(Clone, Copy, Debug, Deserialize)]
pub(crate) struct BlobRecordRef<'a> {
    pub size: u64,
    #[serde(borrow)]
    pub media_type: &'a str,
    pub manifest: bool,
    pub created: u64,
    pub touched: u64,
    pub linked: bool,
    #[serde(borrow)]
    pub subject: Option<&'a str>,
    #[serde(borrow)]
    #[allow(dead_code)]
    pub artifact_type: Option<&'a str>,
}

/// An edge parent → child.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// Whether the parent is broken without the child.
    pub required: bool,
    /// 0 = index entry, 1 = config, 2 = layer.
    pub role: u8,
}

/// What an edge record holds since issue 13: [`EdgeRecord`]'s fields followed
/// by the child's size. bincode writes a struct as its fields in order, so an older
/// sealift decodes these bytes as an [`EdgeRecord`] (it ignores what follows), and
/// [`decode_edge`] reads an older record as one without a size.
#[derive(Serialize)]
struct SizedEdge {
    required: bool,
    role: u8,
    size: u64,
}

/// Encode an edge with the child's size (the descriptor's, which the commit checked against
/// the child's record when the child was there).
pub(crate) fn encode_edge(required: bool, role: u8, size: u64) -> Vec<u8> {
    encode(&SizedEdge {
        required,
        role,
        size,
    })
}

/// Decode an edge record and the child size it carries (`None` for a record written before
/// edges held sizes).
pub(crate) fn decode_edge(bytes: &[u8]) -> Result<(EdgeRecord, Option<u64>)> {
    let corrupt = |e: bincode::error::DecodeError| Error::Corrupt {
        tree: "edges",
        reason: e.to_string(),
    };
    let body = body("edges", bytes)?;
    let cfg = bincode::config::standard();
    let (e, n) = bincode::serde::decode_from_slice::<EdgeRecord, _>(body, cfg).map_err(corrupt)?;
    if n == body.len() {
        return Ok((e, None));
    }
    let (size, _) =
        bincode::serde::decode_from_slice::<u64, _>(&body[n..], cfg).map_err(corrupt)?;
    Ok((e, Some(size)))
}

/// What is fixed by a manifest's content and costly to read again for every listing: the
/// platforms `images` shows (an index's from its entries, an image's from its config).
/// Kept in the `summaries` tree, written when the manifest is committed (or, for a manifest
/// stored before summaries existed, the first time it is asked for). Being a function of
/// content-addressed bytes, it never goes stale; GC removes it with the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSummary {
    /// Platforms as `os/arch[/variant]`, in entry order, each once.
    pub platforms: Vec<String>,
}

/// A tag's target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// Target digest.
    pub digest: String,
    /// Unix seconds of the last change.
    pub updated: u64,
}

/// A lease: work in progress that holds what it wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The store session (one per open) that took it.
    pub session: u64,
    /// PID of the process that took it.
    pub pid: u32,
    /// What it is for.
    pub note: String,
    /// Unix seconds when taken.
    pub created: u64,
    /// Unix seconds when it stops holding; `None` means "until the process ends": such a
    /// lease is dropped when the store is next opened by another process.
    pub expires: Option<u64>,
}

/// A partial file under `ingest/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestRecord {
    /// Lease that owns it.
    pub lease: u64,
    /// Digest it should hash to.
    pub digest: String,
    /// Declared size.
    pub size: u64,
    /// Unix seconds when started.
    pub created: u64,
}

/// Encode a record with its version byte.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![SCHEMA_VERSION];
    // Encoding plain structs into a Vec cannot fail.
    out.extend(bincode::serde::encode_to_vec(v, bincode::config::standard()).unwrap_or_default());
    out
}

/// The bincode part of a record, once its version byte is checked.
fn body<'a>(tree: &'static str, bytes: &'a [u8]) -> Result<&'a [u8]> {
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
                tree,
                reason: "empty value".into(),
            })
        }
    }
    Ok(&bytes[1..])
}

/// Decode a record, checking its version byte.
pub fn decode<T: DeserializeOwned>(tree: &'static str, bytes: &[u8]) -> Result<T> {
    bincode::serde::decode_from_slice(body(tree, bytes)?, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| Error::Corrupt {
            tree,
            reason: e.to_string(),
        })
}

/// Decode a record, checking its version byte, borrowing its strings from `bytes`.
pub(crate) fn decode_ref<'a, T: Deserialize<'a>>(tree: &'static str, bytes: &'a [u8]) -> Result<T> {
    bincode::serde::borrow_decode_from_slice(body(tree, bytes)?, bincode::config::standard())
        .map(|(v, _)| v)
        .map_err(|e| Error::Corrupt {
            tree,
            reason: e.to_string(),
        })
}

/// Key of an edge (and of a referrer link): the parent's key followed by the child's.
pub(crate) fn edge_key(parent: &Digest, child: &Digest) -> Vec<u8> {
    let mut k = parent.to_key();
    k.extend(child.to_key());
    k
}

/// [`EdgeRecord::role`] of a role.
pub(crate) fn role_code(r: Role) -> u8 {
    match r {
        Role::Manifest => 0,
        Role::Config => 1,
        Role::Layer => 2,
    }
}

/// The role an [`EdgeRecord::role`] code stands for.
pub(crate) fn role_of(c: u8) -> Role {
    match c {
        0 => Role::Manifest,
        1 => Role::Config,
        _ => Role::Layer,
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_version_check() {
        let r = TagRecord {
            digest: "sha256:00".into(),
            updated: 7,
        };
        let b = encode(&r);
        assert_eq!(b[0], SCHEMA_VERSION);
        assert_eq!(decode::<TagRecord>("tags", &b).unwrap(), r);
        let mut bad = b.clone();
        bad[0] = 99;
        assert!(matches!(
            decode::<TagRecord>("tags", &bad),
            Err(Error::SchemaVersion { found: 99, .. })
        ));
    }

    #[test]
    fn sized_edges_read_as_edges_and_old_edges_read_without_size() {
        let new = encode_edge(true, 2, 1 << 40);
        // An older sealift decodes only the fields it knows.
        let old_view: EdgeRecord = decode("edges", &new).unwrap();
        assert_eq!(
            old_view,
            EdgeRecord {
                required: true,
                role: 2
            }
        );
        assert_eq!(decode_edge(&new).unwrap(), (old_view, Some(1 << 40)));
        let old = encode(&EdgeRecord {
            required: false,
            role: 0,
        });
        assert_eq!(
            decode_edge(&old).unwrap(),
            (
                EdgeRecord {
                    required: false,
                    role: 0
                },
                None
            )
        );
        let mut cut = new.clone();
        cut.truncate(cut.len() - 1);
        assert!(decode_edge(&cut).is_err());
    }

    #[test]
    fn blob_record_ref_reads_what_blob_record_writes() {
        for subject in [None, Some("sha256:ab".to_string())] {
            let r = BlobRecord {
                size: 300_000,
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                manifest: true,
                created: 1_700_000_000,
                touched: 42,
                linked: true,
                subject: subject.clone(),
                artifact_type: Some("application/spdx+json".into()),
            };
            let b = encode(&r);
            let v: BlobRecordRef<'_> = decode_ref("blobs", &b).unwrap();
            assert_eq!(
                (
                    v.size,
                    v.media_type,
                    v.manifest,
                    v.created,
                    v.touched,
                    v.linked
                ),
                (r.size, r.media_type.as_str(), true, r.created, 42, true)
            );
            assert_eq!(v.subject, subject.as_deref());
            assert_eq!(v.artifact_type, Some("application/spdx+json"));
        }
        let mut bad = encode(&TagRecord {
            digest: "x".into(),
            updated: 1,
        });
        bad[0] = 7;
        assert!(matches!(
            decode_ref::<BlobRecordRef<'_>>("blobs", &bad),
            Err(Error::SchemaVersion { found: 7, .. })
        ));
    }
}
