//! sealift-sync: moving images between the places they live.
//!
//! OCI image layouts (directories and tarballs) in and out of the store, the registry
//! client, one transport interface over every place images live, the copy engine, and the
//! sync jobs built on them (`config`: the TOML file; `job`: running a job, its state and
//! reports in the store).

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
