//! Pushing OCI layouts into a registry with skopeo, for tests that need content there.

use std::path::Path;
use std::process::{Command, Stdio};

/// Copies the image `ref_name` of the OCI layout at `layout_dir` to
/// `docker://{registry_host}/{dest_repo_tag}` with
/// `skopeo copy --all --preserve-digests --dest-tls-verify=false`, as `creds` (user,
/// password) if given. Panics with skopeo's output if the copy fails, and with an install
/// hint if skopeo is missing. `layout_dir` must not contain a `:` (skopeo's `oci:` syntax).
pub fn push_layout_with_skopeo(
    layout_dir: &Path,
    ref_name: &str,
    registry_host: &str,
    dest_repo_tag: &str,
    creds: Option<(&str, &str)>,
) {
    let skopeo = crate::require_tool("skopeo");
    let source = format!("oci:{}:{ref_name}", layout_dir.display());
    let dest = format!("docker://{registry_host}/{dest_repo_tag}");
    let mut command = Command::new(&skopeo);
    // No policy file is needed on a test machine: accept any image.
    command
        .args(["--insecure-policy", "copy", "--all", "--preserve-digests"])
        .arg("--dest-tls-verify=false");
    if let Some((user, password)) = creds {
        command.arg(format!("--dest-creds={user}:{password}"));
    }
    let output = command
        .arg(&source)
        .arg(&dest)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", skopeo.display()));
    assert!(
        output.status.success(),
        "skopeo copy {source} {dest} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
