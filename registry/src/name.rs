//! Repository and reference names, checked before they go into a URL path.

use crate::error::RegistryError;

/// Check a repository path: lowercase components of `[a-z0-9._-]` separated by `/`.
pub fn check_repo(repo: &str) -> Result<(), RegistryError> {
    let ok = !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            what: "repository",
            value: repo.to_string(),
        })
    }
}

/// Check a manifest reference: a tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest.
pub fn check_reference(reference: &str) -> Result<(), RegistryError> {
    let is_tag = !reference.is_empty()
        && reference.len() <= 128
        && reference
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && reference
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if is_tag || reference.parse::<sealift_oci::Digest>().is_ok() {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            what: "reference",
            value: reference.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_repo("library/alpine").is_ok());
        assert!(check_repo("a-b/c_d/e.f").is_ok());
        for bad in ["", "A", "a//b", "../x", "a/..", "a?b", "/a", "a/"] {
            assert!(check_repo(bad).is_err(), "{bad}");
        }
        assert!(check_reference("v1.0_x-y").is_ok());
        assert!(check_reference(
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        .is_ok());
        for bad in ["", ".x", "-x", "a/b", "a?b", &"x".repeat(129)] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }
}
