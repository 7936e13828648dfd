//! The sealift binary on a store whose blobs live in an S3 bucket (a real SeaweedFS from the
//! test kit): `init --blobs s3://…`, then every command as usual; a SIGKILL in the middle of
//! a multipart upload leaves nothing visible and nothing recorded.

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sealift_testkit::Seaweed;

use super::util::*;

/// A store directory with its blobs in a fresh bucket, under prefix `site`.
struct S3Env {
    env: Env,
    bucket: String,
}

impl S3Env {
    fn new() -> S3Env {
        let mut env = Env::new();
        // sealift with the server's settings and none of the machine's AWS_*.
        env.setup = Some(|c| {
            Seaweed::shared().configure(c);
        });
        let s3 = S3Env {
            env,
            bucket: Seaweed::shared().bucket(),
        };
        let out = s3.env.ok(&["init", "--blobs", &s3.location()]);
        assert!(
            out.contains(&s3.location()),
            "init says where blobs live: {out}"
        );
        s3
    }

    fn location(&self) -> String {
        format!("s3://{}/site", self.bucket)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.env.ok(args)
    }

    /// `verify --full --json` finds nothing; returns its report.
    fn verify_clean(&self) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["--json", "verify", "--full"])).unwrap();
        assert_eq!(v["problems"].as_array().map(Vec::len), Some(0), "{v}");
        v
    }

    /// `sha256:<hex>` of every object under the store's prefix, as the server lists them.
    fn objects(&self) -> Vec<String> {
        let mut out: Vec<String> = Seaweed::shared()
            .filer_entries(&format!("/buckets/{}/site/blobs/sha256/", self.bucket))
            .iter()
            .filter_map(|p| p.rsplit('/').next().map(|h| format!("sha256:{h}")))
            .collect();
        out.sort();
        out
    }

    fn uploads(&self) -> Vec<String> {
        Seaweed::shared().incomplete_uploads(&self.bucket)
    }
}

#[test]
fn init_then_every_command_uses_the_bucket() {
    let s3 = S3Env::new();
    // Again with the same location: nothing changes; another location is refused.
    let again: serde_json::Value =
        serde_json::from_str(&s3.ok(&["--json", "init", "--blobs", &s3.location()])).unwrap();
    assert_eq!(again["created"], false);
    assert_eq!(again["blobs"], s3.location().as_str());
    let stderr = s3.env.fails(&["init", "--blobs", "local"]);
    assert!(stderr.contains("sealift migrate"), "{stderr}");

    let (dir, layout) = corpus_dir(&s3.env);
    s3.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    let want = ref_digest(&layout, "shared");
    let images = s3.ok(&["--json", "images"]);
    assert!(images.contains(&want), "{images}");
    // The bytes are in the bucket, not in the store directory.
    let objects = s3.objects();
    assert!(objects.contains(&want), "{objects:?}");
    let local = std::fs::read_dir(s3.env.store().join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(local, 0, "no local blob files");
    s3.verify_clean();

    // Export copies out of the bucket (no hard links across backends); the real tools
    // read the result.
    let out = s3.env.path("out");
    s3.ok(&["export", "-o", out.to_str().unwrap(), "corpus:shared"]);
    for e in std::fs::read_dir(out.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        assert_eq!(e.metadata().unwrap().nlink(), 1, "{:?} is linked", e.path());
        let name = format!("sha256:{}", e.file_name().to_string_lossy());
        assert_eq!(
            file_digest(&e.path()),
            name,
            "exported bytes match their digest"
        );
    }
    umoci_unpacks_base_files(
        &format!("{}:corpus:shared", out.display()),
        &s3.env.path("bundle"),
    );
    let copy = s3.env.path("skopeo-copy");
    tool_ok(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:corpus:shared", out.display()),
            &format!("oci:{}:x", copy.display()),
        ],
    );
}

#[test]
fn sigkill_during_a_multipart_upload_leaves_nothing_and_the_rerun_completes() {
    let s3 = S3Env::new();
    let dir = s3.env.path("big");
    sealift_fixtures::big_layout_dir(&dir, 1, 200 << 20, 7).unwrap();
    let manifest_digest = {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
        index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("blobs/sha256")
                .join(&manifest_digest["sha256:".len()..]),
        )
        .unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    sealift_bin();

    let mut child = s3
        .env
        .cmd()
        .args(["import", dir.to_str().unwrap(), "--tag", "big:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once the layer's multipart upload has begun and had a moment to send parts.
    let deadline = Instant::now() + Duration::from_secs(120);
    while s3.uploads().is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "import ended before its upload began"
        );
        assert!(
            Instant::now() < deadline,
            "no multipart upload began in 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "import finished before the kill"
    );
    child.kill().unwrap();
    let _ = child.wait();

    assert!(
        !s3.objects().contains(&layer),
        "the killed upload is not visible"
    );
    assert_eq!(
        s3.uploads().len(),
        1,
        "the killed upload is left incomplete"
    );
    let images = s3.ok(&["--json", "images"]);
    assert!(
        !images.contains(&manifest_digest),
        "no image recorded: {images}"
    );

    // GC (or any open after the kill) aborts the upload through the ingest record of the
    // dead process.
    s3.ok(&["gc", "--grace", "0"]);
    assert!(
        s3.uploads().is_empty(),
        "leftover upload: {:?}",
        s3.uploads()
    );
    assert!(!s3.objects().contains(&layer));
    s3.verify_clean();

    s3.ok(&["import", dir.to_str().unwrap(), "--tag", "big:1"]);
    assert!(s3.objects().contains(&layer));
    assert!(s3.ok(&["--json", "images"]).contains(&manifest_digest));
    assert!(s3.uploads().is_empty());
    let verify = s3.verify_clean();
    assert!(
        verify["hashed_bytes"].as_u64().unwrap() > 200 << 20,
        "{verify}"
    );
}
