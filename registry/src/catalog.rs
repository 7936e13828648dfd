//! The catalog: every repository of a registry, following `Link` pagination (`page.rs`).

use crate::auth::challenge::Scope;
use crate::client::Registry;
use crate::error::RegistryError;

#[derive(serde::Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

impl Registry {
    /// Every repository in the registry's catalog, following pagination. Many registries
    /// restrict or disable the catalog; their refusal comes back as the error.
    pub async fn catalog(&self) -> Result<Vec<String>, RegistryError> {
        let first = self.url("v2/_catalog")?;
        self.pages(first, vec![Scope::catalog()], |bytes| {
            serde_json::from_slice::<CatalogPage>(bytes).map(|p| p.repositories.unwrap_or_default())
        })
        .await
    }
}
