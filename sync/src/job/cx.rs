//! What every step of a run shares: the options it was started with, the opened places,
//! and the error that stops a job as a whole.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sealift_copy::transport::TransportError;
use sealift_copy::Clients;
use sealift_store::Store;
use tokio_util::sync::CancellationToken;

use super::open::Places;
use super::report::ImageCallback;
use crate::config::JobConfig;

/// Why a job could not run at all (per-image failures are in the
/// [`JobReport`](super::JobReport)).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sealift_store::Error),
    /// A transport failed outside any one image.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No such job.
    #[error("no job named {0:?} in the config")]
    NoSuchJob(String),
}

/// How to run a job.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Only say what would be copied, skipped and pruned (with bytes); write nothing.
    pub dry_run: bool,
    /// Once cancelled, no new image is started; images in flight finish (their copy keeps
    /// the destination consistent either way) and the report says `cancelled`.
    pub cancel: CancellationToken,
    /// Called after each image.
    pub on_image: Option<ImageCallback>,
    /// The registry client pool, shared with other runs (see [`super::clients`]); `None`:
    /// one for this run, from the config.
    pub clients: Option<Arc<Clients>>,
}

/// One run of one job.
pub(crate) struct Ctx<'a> {
    pub store: &'a Arc<Store>,
    pub job: &'a JobConfig,
    pub opts: &'a RunOptions,
    pub places: Places,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
