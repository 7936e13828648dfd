//! Which backend a location opens (kept apart from the trait so the backends can use the
//! trait's module without a circle).

use std::path::Path;

use super::{local::LocalBlobs, Backend, Location};
use crate::error::{Error, Result};

/// Open the backend of the store at `root` for `location`.
pub fn connect(root: &Path, location: &Location) -> Result<Box<dyn Backend>> {
    match location {
        Location::Local => Ok(Box::new(LocalBlobs::open(root)?)),
        Location::S3 { .. } => Err(Error::BadLocation {
            location: location.to_string(),
            reason: "object storage is not available in this build".into(),
        }),
    }
}
