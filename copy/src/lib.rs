//! sealift-copy: copying images between the places they live.
//!
//! Locations (`docker://`, `oci:`, `oci-archive:`, `store:`), one transport interface over
//! every place (registry, store, OCI layout directory and tarball), the copy engine that
//! walks a manifest graph from a source to a sink, and format conversion planned before the
//! copy runs, and the signature policy checked before anything is written.

pub mod clients;
pub mod convert;
pub mod copy;
pub mod location;
pub mod place;
mod plan;
pub mod signatures;
pub mod transport;
mod walk;

pub use clients::Clients;
pub use copy::{copy, CopyOptions, CopyReport};
pub use location::Location;
