//! `sealift-serve` against real clients: skopeo, the distribution registry (as skopeo's
//! destination), sealift's own registry client and copy engine, and raw HTTP.
//!
//! One test binary, one module per area (like the store's tests).

#[path = "serve/common.rs"]
mod common;

#[path = "serve/api.rs"]
mod api;
#[path = "serve/auth.rs"]
mod auth;
#[path = "serve/clients.rs"]
mod clients;
#[path = "serve/errors.rs"]
mod errors;
#[path = "serve/lifecycle.rs"]
mod lifecycle;
#[path = "serve/referrers.rs"]
mod referrers;
