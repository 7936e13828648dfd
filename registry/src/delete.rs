//! Deleting a manifest (for a sync job's retention). The distribution API deletes by
//! digest, which removes every tag naming that digest in the repository.

use reqwest::{Method, StatusCode};
use sealift_oci::Digest;

use crate::auth::challenge::Scope;
use crate::client::Registry;
use crate::error::RegistryError;
use crate::http::Req;
use crate::name::check_repo;

impl Registry {
    /// `DELETE /v2/<repo>/manifests/<digest>`. `Ok(false)` when it was already gone;
    /// registries that refuse deletes (distribution's default) answer with an error.
    pub async fn manifest_delete(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        check_repo(repo)?;
        let url = self.url(&format!("v2/{repo}/manifests/{digest}"))?;
        let req = Req::new(
            Method::DELETE,
            url,
            vec![Scope::new("repository", repo, &["delete", "pull"])],
        );
        let resp = self.send(&req).await?;
        match resp.status() {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(resp.into_error(self.timeout()).await),
        }
    }
}
