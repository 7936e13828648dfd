//! `sealift migrate --blobs`: a store's blobs move to a real S3 server (SeaweedFS) and back,
//! verified, resumable after a kill, with the location switched last (issue 12, item 4).

use std::process::Command;

use sealift_testkit::seaweed::Seaweed;

use super::util::*;

/// Every command of the test gets the shared SeaweedFS's S3 settings (and no other AWS
/// variable); they do not matter while the blobs are local.
fn s3(c: &mut Command) {
    Seaweed::shared().configure(c);
}

fn s3_env() -> Env {
    let mut env = Env::new();
    env.setup = Some(s3);
    env
}

/// Files under the store's local `blobs/` directories.
fn local_blob_files(env: &Env) -> usize {
    ["sha256", "sha512"]
        .iter()
        .filter_map(|a| std::fs::read_dir(env.store().join("blobs").join(a)).ok())
        .map(|d| d.flatten().count())
        .sum()
}

/// Objects under `bucket/prefix/blobs/sha256/`.
fn bucket_objects(weed: &Seaweed, bucket: &str, prefix: &str) -> usize {
    weed.filer_entries(&format!("/buckets/{bucket}/{prefix}/blobs/sha256/"))
        .len()
}

fn records(env: &Env) -> usize {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "verify"])).unwrap();
    v["checked"].as_u64().unwrap() as usize
}

#[test]
fn blobs_move_to_a_bucket_and_back_verified() {
    let weed = Seaweed::shared();
    let bucket = weed.bucket();
    let env = s3_env();
    let (corpus, _) = corpus_dir(&env);
    env.ok(&["import", corpus.to_str().unwrap()]);
    let before = env.images();
    let n = records(&env);
    assert!(n > 10, "the corpus has {n} blobs");
    assert_eq!(local_blob_files(&env), n);

    let to = format!("s3://{bucket}/site-a");
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "migrate", "--blobs", &to])).unwrap();
    assert_eq!(out["copied"].as_u64(), Some(n as u64), "{out}");
    assert_eq!(out["removed"].as_u64(), Some(n as u64), "{out}");
    assert_eq!(bucket_objects(weed, &bucket, "site-a"), n);
    assert_eq!(local_blob_files(&env), 0, "the old copies are removed");
    // The store remembers: every command now reads the bucket.
    assert_eq!(env.images(), before);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "verify", "--full"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["hashed_bytes"].as_u64().unwrap() > 0);
    // An export from the bucket is byte-for-byte the corpus.
    let out_dir = env.path("out");
    let mut args = vec!["export", "-o", out_dir.to_str().unwrap()];
    args.extend(before.iter().map(|(r, _)| r.as_str()));
    env.ok(&args);
    let mut compared = 0;
    for e in std::fs::read_dir(corpus.join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name();
        let copy = out_dir.join("blobs/sha256").join(&name);
        if copy.exists() {
            assert_eq!(
                file_digest(&copy),
                format!("sha256:{}", name.to_string_lossy())
            );
            compared += 1;
        }
    }
    assert!(
        compared > 10,
        "only {compared} blobs exported from the bucket"
    );
    // Asking for the other place without migrate is refused, naming migrate.
    let err = env.fails(&["init", "--blobs", "local"]);
    assert!(err.contains("migrate"), "{err}");

    // And back.
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "migrate", "--blobs", "local"])).unwrap();
    assert_eq!(out["copied"].as_u64(), Some(n as u64), "{out}");
    assert_eq!(local_blob_files(&env), n);
    assert_eq!(bucket_objects(weed, &bucket, "site-a"), 0);
    assert_eq!(env.images(), before);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "verify", "--full"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
}

#[test]
fn a_killed_migration_resumes_and_the_store_works_meanwhile() {
    let weed = Seaweed::shared();
    let bucket = weed.bucket();
    let env = s3_env();
    let (corpus, _) = corpus_dir(&env);
    env.ok(&["import", corpus.to_str().unwrap()]);
    let before = env.images();
    let n = records(&env);
    let to = format!("s3://{bucket}/p");

    let killed = env
        .cmd()
        .env("SEALIFT_FAULT", "migrate.after_copy:5")
        .args(["migrate", "--blobs", &to])
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.status.signal(), Some(9), "{killed:?}");
    // Not switched: the store still reads its local files, whole.
    assert_eq!(local_blob_files(&env), n);
    assert_eq!(env.images(), before);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "verify", "--full"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    // A different target is refused while this one is unfinished.
    let other = env.run(&["migrate", "--blobs", &format!("s3://{bucket}/q")]);
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("unfinished"),
        "{other:?}"
    );

    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "migrate", "--blobs", &to])).unwrap();
    let copied = out["copied"].as_u64().unwrap();
    let resumed = out["resumed"].as_u64().unwrap();
    assert_eq!(copied + resumed, n as u64, "{out}");
    assert!(
        resumed >= 5,
        "the five copied before the kill are re-checked, not copied: {out}"
    );
    assert_eq!(bucket_objects(weed, &bucket, "p"), n);
    assert_eq!(local_blob_files(&env), 0);
    assert_eq!(env.images(), before);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["--json", "verify", "--full"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
}
