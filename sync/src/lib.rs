//! sealift-sync: moving images between the places they live.
//!
//! For now: OCI image layouts (directories and tarballs) in and out of the store. The
//! registry transport and the sync worker build on the same pieces.

pub mod control;
pub mod convert;
pub mod copy;
pub mod inbox;
pub mod layout;
pub mod location;
pub mod registry;
pub mod transport;
