//! `Accept` negotiation for manifests: serve the stored bytes or refuse, never convert.
//!
//! A client that lists only Docker schema2 types cannot read an OCI manifest; distribution
//! answers such a client with a 404 naming the reason, and so does sealift. Converting
//! would change the digest the client asked for.

/// Whether the `Accept` header values (all of them, comma lists allowed) admit
/// `media_type`. No header, an empty one, `*/*` and `application/*` admit everything;
/// `q=0` excludes a type.
pub fn admits<'a>(values: impl IntoIterator<Item = &'a str>, media_type: &str) -> bool {
    let mut listed = false;
    for item in values.into_iter().flat_map(|v| v.split(',')) {
        let mut parts = item.split(';');
        let ty = parts.next().unwrap_or("").trim();
        if ty.is_empty() {
            continue;
        }
        listed = true;
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if refused {
            continue;
        }
        let (top, _) = media_type.split_once('/').unwrap_or((media_type, ""));
        if ty == "*/*"
            || ty.eq_ignore_ascii_case(media_type)
            || ty
                .strip_suffix("/*")
                .is_some_and(|t| t.eq_ignore_ascii_case(top))
        {
            return true;
        }
    }
    !listed
}

#[cfg(test)]
mod tests {
    use super::admits;

    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
    const LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    #[test]
    fn negotiation() {
        assert!(admits([], OCI));
        assert!(admits([""], OCI));
        assert!(admits(["*/*"], OCI));
        assert!(admits(["application/*"], OCI));
        assert!(admits([DOCKER, OCI], OCI));
        assert!(admits([&format!("{DOCKER}, {OCI}; q=0.5")[..]], OCI));
        assert!(!admits([DOCKER], OCI));
        assert!(!admits([&format!("{DOCKER}, {LIST}")[..]], OCI));
        assert!(!admits([&format!("{OCI};q=0")[..]], OCI));
        assert!(!admits(["text/*"], OCI));
        assert!(admits([DOCKER], DOCKER));
    }
}
