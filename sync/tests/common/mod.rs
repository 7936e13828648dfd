//! Helpers shared by the copy and conversion tests.

use std::sync::Arc;

use sealift_fixtures::Layout;
use sealift_store::{Digest, Store};
use sealift_sync::copy::{copy, CopyOptions, CopyReport};
use sealift_sync::location::Location;
use sealift_sync::transport::{open_sink, open_source, OpenOptions};

/// The digest of the index.json entry named `name`.
pub fn digest_of(layout: &Layout, name: &str) -> Digest {
    layout.find_ref(name).unwrap()["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Copy between two locations as the CLI writes them; the error as its message.
pub async fn cp(
    src: &str,
    dst: &str,
    store: Option<&Arc<Store>>,
    opts: &CopyOptions,
) -> Result<CopyReport, String> {
    let s: Location = src.parse().unwrap();
    let d: Location = dst.parse().unwrap();
    let source = open_source(&s, store, &OpenOptions::default()).map_err(|e| e.to_string())?;
    let sink = open_sink(&d, store, &OpenOptions::default()).map_err(|e| e.to_string())?;
    // `During` shows its whole chain in its message.
    copy(source, sink, opts).await.map_err(|e| e.to_string())
}
