//! `[job.verify]`: the signature policy a job applies to every image it copies (the same
//! policy as `copy --verify-key/--verify-identity/--verify-issuer/--trusted-root`). The key
//! and trusted-root files are read and checked when the config is loaded, so a missing or
//! wrong file is an error at its line, not a failure of every image at run time.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use sealift_trust::{Policy, PolicyError, PolicySpec, PublicKey};

use super::error::{ConfigError, Cx};

/// Check `[job.verify]` (`key`: `job[N].verify`, naming it in errors) and build its policy.
pub(crate) fn parse(
    cx: &Cx<'_>,
    v: Spanned<RawVerify>,
    key: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<Policy, ConfigError> {
    let start = v.span().start;
    let v = v.into_inner();
    let k = |f: &str| format!("{key}.{f}");
    let mut keys = Vec::new();
    for p in &v.keys {
        if p.get_ref().is_empty() {
            return Err(cx.at(p, &k("keys"), "empty path".into()));
        }
        let path = resolve(p.get_ref());
        // Each key on its own, so an error points at the one at fault.
        PublicKey::from_file(&path).map_err(|e| cx.at(p, &k("keys"), e.to_string()))?;
        keys.push(path);
    }
    let trusted_root = match &v.trusted_root {
        Some(p) if p.get_ref().is_empty() => {
            return Err(cx.at(p, &k("trusted_root"), "empty path".into()))
        }
        Some(p) => Some(resolve(p.get_ref())),
        None => None,
    };
    // Keyless needs all three; said in this file's words rather than the flags'.
    let keyless = [
        ("identity", v.identity.as_ref()),
        ("issuer", v.issuer.as_ref()),
        ("trusted_root", v.trusted_root.as_ref()),
    ];
    let given: Vec<_> = keyless.iter().filter(|(_, s)| s.is_some()).collect();
    let missing: Vec<&str> = keyless
        .iter()
        .filter(|(_, s)| s.is_none())
        .map(|(n, _)| *n)
        .collect();
    let names_one = v.identity.is_some() || v.issuer.is_some();
    if names_one && !missing.is_empty() {
        let (name, at) = given[0];
        return Err(cx.at(
            at.expect("given"),
            &k(name),
            format!(
                "keyless verification needs identity, issuer and trusted_root together (missing: {})",
                missing.join(", ")
            ),
        ));
    }
    if keys.is_empty() && !names_one {
        let message = "give `keys` (PEM public keys) or a keyless `identity`, `issuer` and \
                       `trusted_root`"
            .to_string();
        return Err(match &v.trusted_root {
            Some(p) => cx.at(p, key, message),
            None => cx.err(start, key, message),
        });
    }
    let spec = PolicySpec {
        keys,
        identity: v.identity.map(Spanned::into_inner),
        issuer: v.issuer.map(Spanned::into_inner),
        trusted_root,
    };
    Policy::from_spec(&spec).map_err(|e| {
        let at = match (&e, &v.trusted_root) {
            (PolicyError::Read { .. }, Some(p))
            | (PolicyError::TooLarge { .. }, Some(p))
            | (PolicyError::BadTrustedRoot { .. }, Some(p)) => p.span().start,
            _ => start,
        };
        let name = if at == start {
            key.to_string()
        } else {
            k("trusted_root")
        };
        cx.err(at, name, e.to_string())
    })
}

/// `[job.verify]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVerify {
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    identity: Option<Spanned<String>>,
    issuer: Option<Spanned<String>>,
    trusted_root: Option<Spanned<String>>,
}
