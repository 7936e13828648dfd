//! Which backend a location opens (kept apart from the trait so the backends can use the
//! trait's module without a circle).

use std::path::Path;

use super::aws_config::S3Settings;
use super::{local::LocalBlobs, s3::S3Blobs, Backend, Location};
use crate::error::{Error, Result};

/// How to reach the blob location, when the caller knows better than the environment.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Endpoint and credentials for an `s3://` location. `None`: read them from the AWS
    /// environment variables and shared files ([`S3Settings::from_environment`]).
    pub s3: Option<S3Settings>,
}

/// Open the backend of the store at `root` for `location`, reading S3 settings from the
/// environment.
pub fn connect(root: &Path, location: &Location) -> Result<Box<dyn Backend>> {
    connect_with(root, location, &ConnectOptions::default())
}

/// Open the backend of the store at `root` for `location` with `options`.
pub fn connect_with(
    root: &Path,
    location: &Location,
    options: &ConnectOptions,
) -> Result<Box<dyn Backend>> {
    match location {
        Location::Local => Ok(Box::new(LocalBlobs::open(root)?)),
        Location::S3 { bucket, prefix } => {
            let settings = match &options.s3 {
                Some(s) => s.clone(),
                None => S3Settings::from_environment().map_err(|reason| Error::Backend {
                    location: location.to_string(),
                    action: "connecting to",
                    target: format!("bucket {bucket}"),
                    reason,
                })?,
            };
            Ok(Box::new(S3Blobs::connect(bucket, prefix, &settings)?))
        }
    }
}
