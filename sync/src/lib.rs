//! sealift-sync: moving images between the places they live.
//!
//! For now: OCI image layouts (directories and tarballs) in and out of the store. The
//! registry transport and the sync worker build on the same pieces.

pub mod config;
pub mod control;
pub mod convert;
pub mod copy;
pub mod daemon;
pub mod inbox;
pub mod job;
pub mod layout;
pub mod location;
pub mod registry;
pub mod transport;

pub use config::{Config, ConfigError, InboxSection, JobConfig, Schedule};
pub use job::{job_history, job_status, run_job, JobReport, RunOptions, SyncError};
