//! Authentication: `WWW-Authenticate` challenges, scopes, tokens and the 401 flow.
//!
//! The flow is distribution's token auth: a request answered 401 carries a challenge;
//! `Basic` means "send user:pass on every request"; `Bearer realm=...,service=...,scope=...`
//! means "get a token from the realm for these scopes and send it". Tokens are cached per
//! scope set until shortly before they expire; a token for `pull,push` also serves `pull`.
//!
//! - `challenge`: parsing challenges, scopes, choosing the scheme (pure);
//! - `cache`: the token cache and the token server's answer (pure);
//! - `token`: the Authorization value for a request, fetching tokens from the realm;
//! - `flow`: what a 401 leads to (re-authentication once, or an error saying why).

pub(crate) mod cache;
pub(crate) mod challenge;
mod flow;
mod token;

pub use cache::{TokenCache, TokenResponse};
pub use challenge::{
    basic_header, choose_scheme, merge_scopes, parse_challenges, Challenge, Scheme, Scope,
};
