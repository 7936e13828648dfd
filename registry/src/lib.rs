//! sealift-registry: a client for OCI distribution registries (async, tokio + reqwest with rustls).
//!
//! One [`Registry`] per registry host; clones share connections, the concurrency limit and
//! the token cache. What it guarantees (see ARCHITECTURE.md, "Copy semantics"):
//!
//! - **Auth** from the `WWW-Authenticate` challenge of a 401: Basic, or Bearer tokens
//!   (anonymous, with basic credentials, or an identity token exchanged as an OAuth2
//!   refresh token), cached per scope until shortly before expiry, one re-auth per 401.
//!   Credentials are explicit or looked up in podman/docker auth files and credential
//!   helpers ([`credentials`]).
//! - **Authorization is never sent to another host.** Redirects are followed by hand (up
//!   to [`MAX_REDIRECTS`](client::MAX_REDIRECTS)); the header goes only to the registry's
//!   own scheme://host:port, so a blob redirected to object storage, or an upload
//!   `Location` on another host, gets none. Tokens and passwords never reach logs or errors,
//!   and URLs in errors lose their query (pre-signed URLs carry signatures there).
//! - **Bytes are verified**: manifests against the digest asked for and
//!   `Docker-Content-Digest`, capped at 4 MiB before reading more; blobs through
//!   [`BlobReader`], which hashes while reading, refuses bytes past the size, and resumes
//!   broken downloads with `Range`.
//! - **Retries** with exponential backoff and jitter on connection errors, timeouts, 429
//!   (honouring `Retry-After`) and 5xx; never on other 4xx.
//! - **A concurrency limit** per registry (a semaphore permit per request in flight; a
//!   `BlobReader` holds its permit while its body is open). A task that reads a blob from
//!   a registry and uploads it to the same [`Registry`] holds two permits at once: keep the
//!   number of such parallel copies below `max_concurrent`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sealift_registry::RegistryError> {
//! use sealift_registry::{Registry, RegistryConfig};
//! use tokio::io::AsyncReadExt;
//!
//! let reg = Registry::new(RegistryConfig::new("127.0.0.1:5000"))?;
//! let m = reg.manifest_get("library/alpine", "latest").await?;
//! let view = sealift_oci::ManifestView::parse(&m.bytes, Some(&m.media_type)).unwrap();
//! if let Some(config) = &view.config {
//!     let mut r = reg.blob_get("library/alpine", &config.digest, config.size).await?;
//!     let mut bytes = Vec::new();
//!     r.read_to_end(&mut bytes).await?; // verified: size and digest
//! }
//! # Ok(()) }
//! ```

// The request core, apart from what rides on it: configuration and the client handle;
// request/response types and bounded reads; one network try with redirects; the pipeline
// with retries; the rate limit; names checked before they reach a URL.
pub mod client;
pub mod config;
mod http;
pub mod limit;
pub mod name;
mod redirect;
pub mod retry;
mod send;

// Authentication: challenges, tokens and the 401 flow; where credentials come from.
pub mod auth;
pub mod credentials;

// One file per API area.
pub mod blob;
pub mod catalog;
pub mod delete;
pub mod manifest;
mod page;
pub mod referrer;
pub mod tag;

pub mod error;

pub use blob::BlobReader;
pub use client::{Registry, RegistryConfig};
pub use credentials::{AuthEnv, Credentials};
pub use error::RegistryError;
pub use manifest::{FetchedManifest, ManifestHead};
pub use referrer::referrers_tag;
pub use retry::RetryPolicy;
