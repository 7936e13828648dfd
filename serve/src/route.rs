//! Request paths parsed into typed routes, before anything else looks at them.
//!
//! The raw (still percent-encoded) path is split on `/`; the endpoint is told by the last
//! one or two segments (`manifests/<ref>`, `blobs/<digest>`, `referrers/<digest>`,
//! `tags/list`), and everything before is the repository name, parsed with the store's
//! grammar. `..`, `%2e`, `%2f` and any other escape fail that grammar, so no request path
//! names a file: only parsed digests ever select blob files. The query string is decoded
//! here too.

use std::collections::HashMap;

use axum::http::StatusCode;
use sealift_oci::{Digest, Repo, Tag};

use crate::error::{ApiError, Code};

/// A manifest reference: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

/// What a request path asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`.
    Base,
    /// `/v2/_catalog`.
    Catalog,
    /// `/v2/<name>/tags/list`.
    Tags(Repo),
    /// `/v2/<name>/manifests/<reference>`.
    Manifest(Repo, Reference),
    /// `/v2/<name>/blobs/<digest>`.
    Blob(Repo, Digest),
    /// `/v2/<name>/blobs/uploads/…`: only ever written to.
    Upload(Repo),
    /// `/v2/<name>/referrers/<digest>`.
    Referrers(Repo, Digest),
}

fn repo(segments: &[&str]) -> Result<Repo, ApiError> {
    let name = segments.join("/");
    if name.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::NameInvalid,
            "the repository name is empty",
        ));
    }
    name.parse().map_err(|e: sealift_oci::reference::RefError| {
        ApiError::new(StatusCode::BAD_REQUEST, Code::NameInvalid, e.to_string())
    })
}

fn digest(s: &str) -> Result<Digest, ApiError> {
    s.parse().map_err(|e: sealift_oci::digest::DigestError| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            Code::DigestInvalid,
            format!("{s:?} is not a digest: {e}"),
        )
    })
}

fn reference(s: &str) -> Result<Reference, ApiError> {
    if s.contains(':') {
        return digest(s).map(Reference::Digest);
    }
    s.parse()
        .map(Reference::Tag)
        .map_err(|e: sealift_oci::reference::RefError| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::ManifestInvalid,
                format!("{s:?} is neither a tag nor a digest: {e}"),
            )
        })
}

/// Parse a raw request path.
pub fn parse(path: &str) -> Result<Route, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            Code::Unsupported,
            format!("no such endpoint: {path:?} (this is a read-only OCI distribution registry)"),
        )
    };
    let rest = path.strip_prefix("/v2").ok_or_else(not_found)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or_else(not_found)?;
    let seg: Vec<&str> = rest.split('/').collect();
    let n = seg.len();
    if seg == ["_catalog"] {
        return Ok(Route::Catalog);
    }
    if n >= 2 && seg[n - 2] == "tags" && seg[n - 1] == "list" {
        return Ok(Route::Tags(repo(&seg[..n - 2])?));
    }
    if let Some(i) = seg.iter().rposition(|s| *s == "blobs") {
        if seg.get(i + 1) == Some(&"uploads") && n <= i + 3 {
            return Ok(Route::Upload(repo(&seg[..i])?));
        }
    }
    if n >= 2 {
        let (name, kind, last) = (&seg[..n - 2], seg[n - 2], seg[n - 1]);
        match kind {
            "manifests" => return Ok(Route::Manifest(repo(name)?, reference(last)?)),
            "blobs" => return Ok(Route::Blob(repo(name)?, digest(last)?)),
            "referrers" => return Ok(Route::Referrers(repo(name)?, digest(last)?)),
            _ => {}
        }
    }
    Err(not_found())
}

/// The query parameters, percent-decoded; the last of a repeated name wins. A `+` stays a
/// `+`: clients write `artifactType=application/spdx+json` unescaped, and no value here
/// (media types, tags, digests, numbers) can hold a space, so reading `+` as a space the
/// way HTML forms do would only turn such values into ones matching nothing.
pub fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn code(path: &str) -> (StatusCode, Code) {
        let e = parse(path).unwrap_err();
        (e.status, e.code)
    }

    #[test]
    fn routes() {
        assert_eq!(parse("/v2/").unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap(), Route::Base);
        assert_eq!(parse("/v2/_catalog").unwrap(), Route::Catalog);
        let r: Repo = "a/b-c/d".parse().unwrap();
        assert_eq!(
            parse("/v2/a/b-c/d/tags/list").unwrap(),
            Route::Tags(r.clone())
        );
        assert_eq!(
            parse("/v2/a/b-c/d/manifests/v1.0").unwrap(),
            Route::Manifest(r.clone(), Reference::Tag("v1.0".parse().unwrap()))
        );
        assert_eq!(
            parse(&format!("/v2/a/b-c/d/manifests/{D}")).unwrap(),
            Route::Manifest(r.clone(), Reference::Digest(D.parse().unwrap()))
        );
        assert_eq!(
            parse(&format!("/v2/a/b-c/d/blobs/{D}")).unwrap(),
            Route::Blob(r.clone(), D.parse().unwrap())
        );
        assert_eq!(
            parse(&format!("/v2/a/b-c/d/referrers/{D}")).unwrap(),
            Route::Referrers(r.clone(), D.parse().unwrap())
        );
        assert_eq!(
            parse("/v2/a/b-c/d/blobs/uploads/").unwrap(),
            Route::Upload(r.clone())
        );
        assert_eq!(
            parse("/v2/a/b-c/d/blobs/uploads/1234").unwrap(),
            Route::Upload(r)
        );
        // A repository may be named like an endpoint word.
        assert_eq!(
            parse("/v2/manifests/manifests/x").unwrap(),
            Route::Manifest(
                "manifests".parse().unwrap(),
                Reference::Tag("x".parse().unwrap())
            )
        );
    }

    #[test]
    fn traversal_and_malformed_names_are_refused() {
        for p in [
            "/v2/../etc/manifests/latest",
            "/v2/a/../../manifests/latest",
            "/v2/a/%2e%2e/manifests/latest",
            "/v2/a%2f..%2f..%2fetc/manifests/latest",
            "/v2/A/manifests/latest",
            "/v2//manifests/latest",
            "/v2/a//b/manifests/latest",
            "/v2/-a/manifests/latest",
        ] {
            assert_eq!(code(p), (StatusCode::BAD_REQUEST, Code::NameInvalid), "{p}");
        }
        assert_eq!(
            code("/v2/manifests/latest"),
            (StatusCode::BAD_REQUEST, Code::NameInvalid)
        );
        assert_eq!(
            code("/v2/a/manifests/..%2f..%2fx"),
            (StatusCode::BAD_REQUEST, Code::ManifestInvalid)
        );
        assert_eq!(
            code("/v2/a/blobs/sha256:..%2f..%2fetc%2fpasswd"),
            (StatusCode::BAD_REQUEST, Code::DigestInvalid)
        );
        assert_eq!(
            code("/v2/a/blobs/sha256:abc"),
            (StatusCode::BAD_REQUEST, Code::DigestInvalid)
        );
        assert_eq!(
            code("/v2/a/manifests/md5:abc"),
            (StatusCode::BAD_REQUEST, Code::DigestInvalid)
        );
        for p in ["/v3/", "/v2/a/b", "/v2/a/tags", "/etc/passwd", "/v2x/"] {
            assert_eq!(code(p), (StatusCode::NOT_FOUND, Code::Unsupported), "{p}");
        }
    }

    #[test]
    fn plus_is_a_plus_and_escapes_decode() {
        for uri in [
            "/x?artifactType=application/spdx+json",
            "/x?artifactType=application%2Fspdx%2Bjson",
            "/x?n=1&artifactType=application/spdx%2bjson&",
        ] {
            let q = query(&uri.parse().unwrap());
            assert_eq!(q["artifactType"], "application/spdx+json", "{uri}");
        }
        let q = query(&"/x?last=a%3Ab&n=2&n=3&flag".parse().unwrap());
        assert_eq!((q["last"].as_str(), q["n"].as_str()), ("a:b", "3"));
        assert_eq!(q["flag"], "");
        assert!(query(&"/x".parse().unwrap()).is_empty());
    }
}
