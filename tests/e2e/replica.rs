//! Stores on a real S3 server (SeaweedFS): one writer and two read replicas on the same
//! bucket and prefix, each replica a `sync --daemon` that follows the writer and serves;
//! and `serve --redirect-blobs`, whose blob GETs are 307s to presigned bucket URLs.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sealift_fixtures::{mirror_corpus, Layout};
use sealift_testkit::{FaultProxy, Seaweed};

use super::serve::start_serve;
use super::util::*;

/// Kills a child (a server or daemon) when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Running {
    /// SIGTERM, and insist on a clean exit.
    fn stop(mut self) {
        let pid = self.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let exit = wait_for("the process to exit", || self.0.try_wait().unwrap());
        assert!(exit.success(), "exited with {exit}");
    }
}

/// Poll `check` until it returns `Some`, or panic naming `what` after 90 s.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `env`'s sealift command with the S3 server's settings and none of the machine's.
fn s3_cmd(env: &Env, weed: &Seaweed) -> Command {
    let mut c = env.cmd();
    weed.configure(&mut c);
    c
}

fn s3_ok(env: &Env, weed: &Seaweed, args: &[&str]) -> String {
    let out = s3_cmd(env, weed).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "sealift {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `images --json` of an S3 store as (ref, digest), sorted.
fn s3_images(env: &Env, weed: &Seaweed) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(&s3_ok(env, weed, &["--json", "images"]))
        .expect("images --json is JSON");
    let mut out: Vec<(String, String)> = v
        .as_array()
        .or_else(|| v.get("images").and_then(|i| i.as_array()))
        .expect("images --json is a list")
        .iter()
        .map(|i| {
            (
                i["reference"].as_str().unwrap_or_default().to_string(),
                i["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The objects under `prefix/blobs/sha256/` of `bucket`.
fn objects(weed: &Seaweed, bucket: &str, prefix: &str) -> Vec<String> {
    let mut v = weed.filer_entries(&format!("/buckets/{bucket}/{prefix}/blobs/sha256/"));
    v.sort();
    v
}

/// `sealift serve` on `addr` for an S3 store, with extra flags.
fn serve(env: &Env, weed: &Seaweed, addr: &str, flags: &[&str]) -> (Running, String) {
    let mut cmd = s3_cmd(env, weed);
    cmd.args(["--json", "serve", "--addr", addr]).args(flags);
    let (child, v) = start_serve(cmd);
    (Running(child), v["address"].as_str().unwrap().to_string())
}

/// A replica: its own store on the writer's bucket and prefix, and a daemon whose one job
/// follows the writer (through `source`) every 2 s and whose `[serve]` serves the store.
/// Returns the daemon and the address it serves on.
fn replica(env: &Env, weed: &Seaweed, blobs: &str, source: &str) -> (Running, String) {
    let out = s3_ok(env, weed, &["init", "--blobs", blobs, "--replica"]);
    assert!(out.contains("read replica"), "{out}");
    let config = env.path("replica.toml");
    std::fs::write(
        &config,
        format!(
            "[serve]\naddr = \"127.0.0.1:0\"\n\n[[job]]\nname = \"follow\"\n\
             source = \"docker://{source}\"\ndestination = \"store:\"\nschedule = \"2s\"\n\
             [job.repositories]\nallow = [\"mirror/*\"]\n"
        ),
    )
    .unwrap();
    let mut child = s3_cmd(env, weed)
        .args(["sync", "--daemon", "--config", config.to_str().unwrap()])
        .env("SEALIFT_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(addr) = line.split("serving the store on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let running = Running(child);
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the replica's daemon logs the address it serves on");
    (running, addr)
}

/// skopeo copies `reference` (every platform) from `registry` into a fresh layout with
/// digests preserved, and the copy's top manifest has `digest`: every byte skopeo fetched
/// matched its descriptor, and the manifests are the writer's.
fn skopeo_pulls(env: &Env, registry: &str, reference: &str, digest: &str, n: usize) {
    let out = env.path(&format!("pull-{n}"));
    tool_ok(
        "skopeo",
        &[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            &format!("docker://{registry}/{reference}"),
            &format!("oci:{}:x", out.display()),
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["digest"], digest,
        "{reference} from {registry}"
    );
    std::fs::remove_dir_all(out).unwrap();
}

fn write_corpus(env: &Env) -> (std::path::PathBuf, Layout) {
    let layout = mirror_corpus(3, &["1.0", "1.1"], 256 * 1024);
    let dir = env.path("corpus");
    layout.write_dir(&dir).unwrap();
    (dir, layout)
}

/// The URL of the unique layer of the single-platform image `reference` (`digest`) on
/// `registry`, and its bytes.
fn a_layer(layout: &Layout, reference: &str, digest: &str, registry: &str) -> (String, Vec<u8>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(layout.blob_bytes(digest).unwrap()).unwrap();
    let layer = manifest["layers"][1]["digest"].as_str().unwrap();
    let repo = reference.rsplit_once(':').unwrap().0;
    (
        format!("http://{registry}/v2/{repo}/blobs/{layer}"),
        layout.blob_bytes(layer).unwrap().to_vec(),
    )
}

#[test]
fn replicas_on_the_writers_bucket_adopt_its_blobs_serve_alone_and_follow_new_tags() {
    let weed = Seaweed::shared();
    let bucket = weed.bucket();
    let blobs = format!("s3://{bucket}/fleet");

    // The writer: a store on the bucket, the corpus imported, served on a fixed port (it
    // comes back on the same one after a restart).
    let writer = Env::new();
    let (corpus, layout) = write_corpus(&writer);
    s3_ok(&writer, weed, &["init", "--blobs", &blobs]);
    s3_ok(&writer, weed, &["import", corpus.to_str().unwrap()]);
    let images = s3_images(&writer, weed);
    assert_eq!(images.len(), 6, "{images:?}");
    let waddr = format!("127.0.0.1:{}", sealift_testkit::free_port());
    let (wserve, _) = serve(&writer, weed, &waddr, &[]);
    let before = objects(weed, &bucket, "fleet");
    assert!(!before.is_empty());

    // Two replicas follow the writer through a proxy that logs what they fetch.
    let proxy = FaultProxy::start(&waddr);
    let envs = [Env::new(), Env::new()];
    let replicas: Vec<(Running, String)> = envs
        .iter()
        .map(|e| replica(e, weed, &blobs, &proxy.host()))
        .collect();
    for env in &envs {
        wait_for("a replica's first sync", || {
            (s3_images(env, weed) == images).then_some(())
        });
    }
    // Adopted, not copied: no blob crossed from the writer to a replica (only manifests
    // did), and the bucket holds the same objects as before.
    let blob_gets: Vec<String> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.method == "GET" && q.path.contains("/blobs/"))
        .map(|q| q.path)
        .collect();
    assert!(
        blob_gets.is_empty(),
        "replicas fetched blobs: {blob_gets:?}"
    );
    assert!(proxy
        .requests()
        .iter()
        .any(|q| q.path.contains("/manifests/")));
    assert_eq!(objects(weed, &bucket, "fleet"), before);

    // skopeo pulls every image from each replica, digests intact.
    let mut n = 0;
    for (_, addr) in &replicas {
        for (reference, digest) in &images {
            n += 1;
            skopeo_pulls(&writer, addr, reference, digest, n);
        }
    }

    // Streamed from the bucket, with Range: a layer of the second repository's image.
    let (reference, digest) = images
        .iter()
        .find(|(r, _)| r.starts_with("mirror/r01:"))
        .unwrap();
    let (url, bytes) = a_layer(&layout, reference, digest, &replicas[0].1);
    assert!(tool_ok("curl", &["-fsS", &url]) == bytes);
    let part = tool_ok("curl", &["-fsS", "-r", "1000-1999", &url]);
    assert_eq!(part, &bytes[1000..2000]);

    // The writer stops; the replicas serve on from the bucket.
    wserve.stop();
    for (_, addr) in &replicas {
        for (reference, digest) in &images {
            n += 1;
            skopeo_pulls(&writer, addr, reference, digest, n);
        }
    }

    // A tag added at the writer, which comes back: it appears at a replica after its sync.
    let (reference, digest) = images.last().unwrap().clone();
    let repo = reference.rsplit_once(':').unwrap().0;
    let new_ref = format!("{repo}:2.0");
    s3_ok(&writer, weed, &["tag", &reference, &new_ref]);
    let (_wserve, _) = serve(&writer, weed, &waddr, &[]);
    for env in &envs {
        wait_for("the new tag at a replica", || {
            s3_images(env, weed)
                .iter()
                .any(|(r, d)| r == &new_ref && d == &digest)
                .then_some(())
        });
    }
    n += 1;
    skopeo_pulls(&writer, &replicas[0].1, &new_ref, &digest, n);

    // A replica's GC (everything unreferenced, no grace) drops records only: the writer's
    // objects stay, and the writer's store stays whole.
    drop(replicas);
    s3_ok(&envs[0], weed, &["tag", &new_ref, "mirror/keep:1"]);
    for (r, _) in &images {
        s3_ok(&envs[0], weed, &["rm", r]);
    }
    s3_ok(&envs[0], weed, &["gc", "--grace", "0"]);
    assert_eq!(objects(weed, &bucket, "fleet"), before);
    drop(_wserve);
    s3_ok(&writer, weed, &["verify", "--full"]);
}

#[test]
fn redirect_blobs_answers_get_with_a_presigned_url_on_the_bucket() {
    let weed = Seaweed::shared();
    let bucket = weed.bucket();
    let env = Env::new();
    let (corpus, layout) = write_corpus(&env);
    s3_ok(
        &env,
        weed,
        &["init", "--blobs", &format!("s3://{bucket}/r")],
    );
    s3_ok(&env, weed, &["import", corpus.to_str().unwrap()]);
    // Listed before serving: the server holds the store while it runs.
    let images = s3_images(&env, weed);
    let (server, addr) = serve(
        &env,
        weed,
        "127.0.0.1:0",
        &["--redirect-blobs", "--redirect-ttl", "2m"],
    );

    // A layer of the single-platform image in the second repository.
    let (reference, digest) = images
        .iter()
        .find(|(r, _)| r.starts_with("mirror/r01:"))
        .unwrap();
    let (url, bytes) = a_layer(&layout, reference, digest, &addr);
    let layer = url.rsplit('/').next().unwrap().to_string();
    let repo = reference.rsplit_once(':').unwrap().0;

    // GET: a 307 to a presigned URL of the S3 endpoint, with the digest header.
    let raw = String::from_utf8(tool_ok(
        "curl",
        &["-sS", "-o", "/dev/null", "-D", "-", &url],
    ))
    .unwrap();
    let head = raw.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 307"), "{head}");
    assert!(
        head.contains(&format!("docker-content-digest: {layer}")),
        "{head}"
    );
    let location = raw
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location: "))
        .map(|l| &l["location: ".len()..])
        .unwrap()
        .trim()
        .to_string();
    let key = layer.replace(':', "/");
    assert!(
        location.starts_with(&format!("{}/{bucket}/r/blobs/{key}?", weed.endpoint())),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    // Following it gives the bytes, and a range of them.
    let got = tool_ok("curl", &["-fsSL", &url]);
    assert!(got == bytes, "redirected GET returned other bytes");
    let part = tool_ok("curl", &["-fsSL", "-r", "10-109", &url]);
    assert_eq!(part, &bytes[10..110]);
    // HEAD is answered here, with the size.
    let head = String::from_utf8(tool_ok("curl", &["-fsSI", &url]))
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", bytes.len())),
        "{head}"
    );
    // An unknown blob is still refused here, not redirected.
    let missing = format!("http://{addr}/v2/{repo}/blobs/sha256:{}", "0".repeat(64));
    let code = tool_ok(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", &missing],
    );
    assert_eq!(code, b"404");

    // skopeo pulls every image through the redirects, digests intact.
    for (n, (reference, digest)) in images.iter().enumerate() {
        skopeo_pulls(&env, &addr, reference, digest, n);
    }
    server.stop();

    // On a store with local blob files the flag is refused at start, saying why.
    let local = Env::new();
    let err = local.fails(&["init", "--replica"]);
    assert!(err.contains("--blobs s3://"), "{err}");
    assert!(!local.store().exists(), "a refused init creates nothing");
    let err = local.fails(&["serve", "--addr", "127.0.0.1:0", "--redirect-blobs"]);
    assert!(
        err.contains("redirect_blobs") && err.contains("s3://"),
        "{err}"
    );
}
