//! Repository and reference names, checked before they go into a URL path. The rules are
//! sealift-oci's ([`sealift_oci::reference::check_repo`]); here they give a
//! [`RegistryError::InvalidName`].

use sealift_oci::reference::{self, NameError};

use crate::error::RegistryError;

impl From<NameError> for RegistryError {
    fn from(e: NameError) -> RegistryError {
        RegistryError::InvalidName {
            what: e.what(),
            value: e.value().to_string(),
        }
    }
}

/// Check a repository path: lowercase components of `[a-z0-9._-]` separated by `/`.
pub fn check_repo(repo: &str) -> Result<(), RegistryError> {
    Ok(reference::check_repo(repo)?)
}

/// Check a manifest reference: a tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`) or a digest.
pub fn check_reference(reference: &str) -> Result<(), RegistryError> {
    Ok(reference::check_reference(reference)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_registry_errors() {
        assert!(check_repo("library/alpine").is_ok());
        match check_repo("A") {
            Err(RegistryError::InvalidName { what, value }) => {
                assert_eq!((what, value.as_str()), ("repository", "A"))
            }
            other => panic!("{other:?}"),
        }
        match check_reference("a/b") {
            Err(RegistryError::InvalidName { what, value }) => {
                assert_eq!((what, value.as_str()), ("reference", "a/b"))
            }
            other => panic!("{other:?}"),
        }
    }
}
