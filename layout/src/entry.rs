//! Classifying tar entry paths of an OCI layout, refusing any that could escape.
//!
//! Pure functions over the path bytes, so they are easy to test and fuzz.

use sealift_oci::Digest;

/// What a tar entry is, by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPath {
    /// `oci-layout`, the version marker.
    OciLayout,
    /// `index.json`, the layout's root index.
    IndexJson,
    /// `blobs/<alg>/<hex>`.
    Blob(Digest),
    /// A directory entry, or anything the layout does not use.
    Ignored,
}

/// Why an entry path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePath {
    /// Starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// Has a `..` component.
    #[error("path contains '..'")]
    ParentDir,
    /// Not UTF-8, or contains a NUL or backslash.
    #[error("path is not plain UTF-8")]
    Encoding,
    /// Names a blob with a malformed digest.
    #[error("blob path does not name a valid digest")]
    BadDigest,
}

/// Classify a path. Any `./` prefix is dropped; the layout may sit under a folder inside
/// the tar (its files are found by their last components).
pub fn classify(raw: &[u8]) -> Result<EntryPath, UnsafePath> {
    let s = std::str::from_utf8(raw).map_err(|_| UnsafePath::Encoding)?;
    if s.contains('\0') || s.contains('\\') {
        return Err(UnsafePath::Encoding);
    }
    if s.starts_with('/') {
        return Err(UnsafePath::Absolute);
    }
    let parts: Vec<&str> = s
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(UnsafePath::ParentDir);
    }
    match parts.as_slice() {
        [.., "oci-layout"] => Ok(EntryPath::OciLayout),
        [.., "index.json"] => Ok(EntryPath::IndexJson),
        [.., "blobs", alg, hex] if !s.ends_with('/') => format!("{alg}:{hex}")
            .parse()
            .map(EntryPath::Blob)
            .map_err(|_| UnsafePath::BadDigest),
        _ => Ok(EntryPath::Ignored),
    }
}

/// The folder a layout file sits in inside the tar (`""` at the top), used to refuse a
/// tar holding two different layouts.
pub fn prefix(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s = s.trim_start_matches("./");
    match s.rfind('/') {
        Some(i) => s[..i].to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn classifies() {
        assert_eq!(classify(b"index.json"), Ok(EntryPath::IndexJson));
        assert_eq!(classify(b"./oci-layout"), Ok(EntryPath::OciLayout));
        assert_eq!(classify(b"img/index.json"), Ok(EntryPath::IndexJson));
        let blob = format!("./blobs/sha256/{HEX}");
        assert!(matches!(classify(blob.as_bytes()), Ok(EntryPath::Blob(_))));
        assert_eq!(classify(b"blobs/sha256/"), Ok(EntryPath::Ignored));
        assert_eq!(classify(b"blobs/sha256/zz"), Err(UnsafePath::BadDigest));
        assert_eq!(classify(b"/etc/passwd"), Err(UnsafePath::Absolute));
        assert_eq!(classify(b"a/../../index.json"), Err(UnsafePath::ParentDir));
        assert_eq!(classify(b"blobs/sha256/..\\x"), Err(UnsafePath::Encoding));
        assert_eq!(prefix(b"./img/index.json"), "img");
        assert_eq!(prefix(b"index.json"), "");
    }

    proptest! {
        #[test]
        fn never_panics_and_never_accepts_dotdot(s in "[a-z./]{0,40}") {
            if let Ok(EntryPath::Blob(_)) | Ok(EntryPath::IndexJson) | Ok(EntryPath::OciLayout) = classify(s.as_bytes()) {
                prop_assert!(!s.split('/').any(|p| p == ".."));
                prop_assert!(!s.starts_with('/'));
            }
        }
    }
}
