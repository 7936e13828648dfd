//! Opening a location as a source or a sink: the one place that knows which backend serves
//! which kind of location (the backends themselves only know the interface in `mod.rs`).

use std::sync::Arc;

use sealift_store::Store;

use super::{layout_dir, layout_tar, registry, store, Sink, Source, TransportError};
use crate::clients::Clients;
use crate::location::Location;

/// Open a location as a source. The store is passed in because one process owns it; the
/// registry clients come from the caller's pool.
pub fn open_source(
    loc: &Location,
    store: Option<&Arc<Store>>,
    clients: &Clients,
) -> Result<Arc<dyn Source>, TransportError> {
    Ok(match loc {
        Location::Registry {
            host,
            repo,
            tag,
            digest,
        } => Arc::new(registry::RegistrySource::new(
            clients.get(host)?,
            repo.clone(),
            tag.clone(),
            digest.clone(),
        )),
        Location::Store(r) => Arc::new(store::StoreSource::new(
            store.ok_or(TransportError::NoStore)?.clone(),
            r.clone(),
        )),
        Location::LayoutDir { path, reference } => Arc::new(layout_dir::LayoutDirSource::new(
            path.clone(),
            reference.clone(),
        )),
        Location::LayoutTar { path, reference } => Arc::new(layout_tar::LayoutTarSource::open(
            path.clone(),
            reference.clone(),
        )?),
    })
}

/// Open a location as a sink.
pub fn open_sink(
    loc: &Location,
    store: Option<&Arc<Store>>,
    clients: &Clients,
) -> Result<Arc<dyn Sink>, TransportError> {
    Ok(match loc {
        Location::Registry {
            host,
            repo,
            tag,
            digest,
        } => Arc::new(registry::RegistrySink::new(
            clients.get(host)?,
            repo.clone(),
            tag.clone(),
            digest.clone(),
        )),
        Location::Store(r) => Arc::new(store::StoreSink::new(
            store.ok_or(TransportError::NoStore)?.clone(),
            r.clone(),
        )?),
        Location::LayoutDir { path, reference } => Arc::new(layout_dir::LayoutDirSink::new(
            path.clone(),
            reference.clone(),
        )?),
        Location::LayoutTar { path, reference } => Arc::new(layout_tar::LayoutTarSink::create(
            path.clone(),
            reference.clone(),
        )?),
    })
}
