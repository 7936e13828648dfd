//! sealift-sync: sync jobs and the daemon that runs them.
//!
//! `config`: the TOML file (jobs, inbox, serve), checked with `file:line:col` errors;
//! `job`: running a job through the copy engine, its state and reports in the store;
//! `daemon`: schedules, the inbox watcher and the control socket.

pub mod config;
pub mod control;
pub mod daemon;
pub mod inbox;
pub mod job;

pub use config::{Config, ConfigError, InboxSection, JobConfig, Schedule};
pub use job::{job_history, job_status, run_job, JobReport, RunOptions, SyncError};
