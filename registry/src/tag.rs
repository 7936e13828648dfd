//! Tags: the tag list of a repository, following `Link` pagination (`page.rs`).

use crate::auth::challenge::Scope;
use crate::client::Registry;
use crate::error::RegistryError;
use crate::name::check_repo;

/// Kept here for callers that found it beside the tag list.
pub use crate::page::parse_link_next;

#[derive(serde::Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

impl Registry {
    /// Every tag of `repo`, in the registry's order, following pagination
    /// (`n` = the configured page size). A repository that does not exist is `NotFound`.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        check_repo(repo)?;
        let first = self.url(&format!("v2/{repo}/tags/list"))?;
        let pages = self
            .pages(first, vec![Scope::pull(repo)], |bytes| {
                serde_json::from_slice::<TagPage>(bytes).map(|p| p.tags.unwrap_or_default())
            })
            .await;
        match pages {
            Err(RegistryError::Http { status: 404, .. }) => Err(self.not_found(repo, "tags")),
            other => other,
        }
    }
}
