//! `sealift migrate --blobs`: a store's blobs move to a real S3 server (SeaweedFS) and back,
//! verified, resumable after a kill, with the location switched last (issue 12, item 4).

use std::process::Command;

use sealift_testkit::seaweed::Seaweed;

use super::util::*;

/// Run sealift on `env`'s store with `weed`'s S3 settings (and no other AWS variable).
fn s3_run(env: &Env, weed: &Seaweed, args: &[&str]) -> std::process::Output {
    let mut c: Command = env.cmd();
    weed.configure(&mut c);
    c.args(args).output().expect("running sealift")
}

fn s3_ok(env: &Env, weed: &Seaweed, args: &[&str]) -> String {
    let out = s3_run(env, weed, args);
    assert!(
        out.status.success(),
        "sealift {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

fn records(env: &Env, weed: &Seaweed) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&s3_ok(env, weed, &["--json", "verify"])).unwrap();
    v["checked"].as_u64().unwrap() as usize
}

#[test]
fn blobs_move_to_a_bucket_and_back_verified() {
    let weed = Seaweed::shared();
    let bucket = weed.bucket();
    let env = Env::new();
    let (corpus, _) = corpus_dir(&env);
    env.ok(&["import", corpus.to_str().unwrap()]);
    let before = env.images();
    let n = records(&env, weed);
    assert!(n > 10, "the corpus has {n} blobs");
    assert_eq!(local_blob_files(&env), n);

    let to = format!("s3://{bucket}/site-a");
    let out: serde_json::Value = serde_json::from_str(&s3_ok(
        &env,
        weed,
        &["--json", "migrate", "--blobs", &to],
    ))
    .unwrap();
    assert_eq!(out["copied"].as_u64(), Some(n as u64), "{out}");
    assert_eq!(out["removed"].as_u64(), Some(n as u64), "{out}");
    assert_eq!(bucket_objects(weed, &bucket, "site-a"), n);
    assert_eq!(local_blob_files(&env), 0, "the old copies are removed");
    // The store remembers: every command now reads the bucket.
    assert_eq!(env.images(), before);
    let v: serde_json::Value =
        serde_json::from_str(&s3_ok(&env, weed, &["--json", "verify", "--full"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["hashed_bytes"].as_u64().unwrap() > 0);
    // An export from the bucket is byte-for-byte the corpus.
    let out_dir = env.path("out");
    s3_ok(&env, weed, &["export", out_dir.to_str().unwrap()]);
    for e in std::fs::read_dir(corpus.join("blobs/sha256")).unwrap().flatten() {
        let name = e.file_name();
        let copy = out_dir.join("blobs/sha256").join(&name);
        if copy.exists() {
            assert_eq!(file_digest(&copy), format!("sha256:{}", name.to_string_lossy()));
        }
    }
    // Asking for the other place without migrate is refused, naming migrate.
    let err = env.fails(&["init", "--blobs", "local"]);
    assert!(err.contains("migrate"), "{err}");

    // And back.
    let out: serde_json::Value = serde_json::from_str(&s3_ok(
        &env,
        weed,
        &["--json", "migrate", "--blobs", "local"],
    ))
    .unwrap();
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
    let env = Env::new();
    let (corpus, _) = corpus_dir(&env);
    env.ok(&["import", corpus.to_str().unwrap()]);
    let before = env.images();
    let n = records(&env, weed);
    let to = format!("s3://{bucket}/p");

    let mut c = env.cmd();
    weed.configure(&mut c);
    let killed = c
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
    let other = s3_run(&env, weed, &["migrate", "--blobs", &format!("s3://{bucket}/q")]);
    assert!(!other.status.success());
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("unfinished"),
        "{other:?}"
    );

    let out: serde_json::Value = serde_json::from_str(&s3_ok(
        &env,
        weed,
        &["--json", "migrate", "--blobs", &to],
    ))
    .unwrap();
    let copied = out["copied"].as_u64().unwrap();
    let resumed = out["resumed"].as_u64().unwrap();
    assert_eq!(copied + resumed, n as u64, "{out}");
    assert!(resumed >= 5, "the five copied before the kill are re-checked, not copied: {out}");
    assert_eq!(bucket_objects(weed, &bucket, "p"), n);
    assert_eq!(local_blob_files(&env), 0);
    assert_eq!(env.images(), before);
    let v: serde_json::Value =
        serde_json::from_str(&s3_ok(&env, weed, &["--json", "verify", "--full"])).unwrap();
    assert_eq!(v["problems"].as_array().unwrap().len(), 0, "{v}");
}
