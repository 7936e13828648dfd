//! Helpers for transactions over the store's trees, shared by ingest and graph linking.

use crate::kv::{ConflictableTransactionError, TransactionalTree};

use crate::error::Error;
use crate::record::{self, BlobRecord};

/// Abort a transaction with a store error.
pub(crate) fn abort(e: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(e)
}

/// Decode a record inside a transaction, aborting it on a bad one.
pub(crate) fn tx_decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    v: &[u8],
) -> std::result::Result<T, ConflictableTransactionError<Error>> {
    record::decode(tree, v).map_err(abort)
}

/// Mark a child as linked and touched; returns its size when present. A blob stored before
/// anyone knew its media type (empty) takes the one its parent's descriptor gives.
pub(crate) fn link_child(
    blobs: &TransactionalTree,
    key: &[u8],
    epoch: u64,
    media_type: Option<&str>,
) -> std::result::Result<Option<u64>, ConflictableTransactionError<Error>> {
    let Some(v) = blobs.get(key)? else {
        return Ok(None);
    };
    let mut rec: BlobRecord = tx_decode("blobs", &v)?;
    let fill = media_type.filter(|_| rec.media_type.is_empty());
    if !rec.linked || rec.touched != epoch || fill.is_some() {
        rec.linked = true;
        rec.touched = epoch;
        if let Some(m) = fill {
            rec.media_type = m.to_string();
        }
        blobs.insert(key, record::encode(&rec))?;
    }
    Ok(Some(rec.size))
}
