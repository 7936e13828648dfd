//! Sync jobs end to end: two real registries, the store and layout directories.
//!
//! Long file: just over 600 lines, because eight job tests share one `World` (two registries,
//! a store, the mirror corpus) that splitting would have to export to every part.

mod common;

use std::sync::Arc;
use std::time::Duration;

use sealift_fixtures::{mirror_corpus, mirror_repo};
use sealift_oci::{Digest, StoreRef};
use sealift_registry::{Registry as Client, RegistryConfig};
use sealift_store::gc::GcOptions;
use sealift_store::verify::VerifyOptions;
use sealift_store::Store;
use sealift_sync::job::{job_history, job_status, run_job, JobReport, RunOptions};
use sealift_sync::Config;
use sealift_testkit::{FaultProxy, Registry, RegistryOptions};

const TAGS: &[&str] = &["v1.0.0", "v1.1.0", "v2.0.0", "latest", "dev-x"];

struct World {
    tmp: tempfile::TempDir,
    store: Arc<Store>,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(tmp.path().join("store")).unwrap());
        // 3 repositories x 5 tags of small images (repository 0: multi-platform indexes).
        mirror_corpus(3, TAGS, 512)
            .write_dir(&tmp.path().join("corpus"))
            .unwrap();
        World { tmp, store }
    }

    fn config(&self, text: &str) -> Config {
        let p = self.tmp.path().join("sync.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn run(&self, config: &Config, job: &str, dry_run: bool) -> JobReport {
        let opts = RunOptions {
            dry_run,
            ..Default::default()
        };
        run_job(&self.store, config, config.job(job).unwrap(), &opts)
            .await
            .unwrap()
    }

    /// Push the corpus into a registry with a job (layout dir -> registry).
    async fn seed(&self, host: &str) {
        let c = self.config(&format!(
            "[[job]]\nname = \"seed\"\nsource = \"oci:corpus\"\ndestination = \"docker://{host}\"\nreferrers = true\n"
        ));
        let r = self.run(&c, "seed", false).await;
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.copied.len(), 15);
    }
}

fn client(host: &str) -> Client {
    Client::new(RegistryConfig::new(host)).unwrap()
}

async fn tags(host: &str, repo: &str) -> Vec<String> {
    let mut t = client(host).tags(repo).await.unwrap_or_default();
    t.sort();
    t
}

fn s(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_selection_platforms_referrers_and_failures() {
    let w = World::new();
    let src = Registry::start();
    let dst = Registry::start();
    w.seed(&src.host()).await;
    let (sh, dh) = (src.host(), dst.host());
    let r1 = mirror_repo(1);
    let c = w.config(&format!(
        r#"
[[job]]
name = "glob"
source = "docker://{sh}/{r1}"
destination = "docker://{dh}/glob/r1"
[job.tags]
allow = ["v1.*"]

[[job]]
name = "semver"
source = "docker://{sh}/{r1}"
destination = "docker://{dh}/semver/r1"
[job.tags]
semver = ">=1.1, <3"

[[job]]
name = "latest"
source = "docker://{sh}/{r1}"
destination = "docker://{dh}/latest/r1"
[job.tags]
latest = 2

[[job]]
name = "regex"
source = "docker://{sh}/{r1}"
destination = "docker://{dh}/regex/r1"
[job.tags]
allow_regex = ["dev-.*|latest"]
deny = ["dev-*"]

[[job]]
name = "catalog"
source = "docker://{sh}"
destination = "docker://{dh}/cat"
[job.repositories]
allow = ["mirror/r0[12]"]
[job.tags]
list = ["latest", "missing"]

[[job]]
name = "arm"
source = "docker://{sh}/{r0}"
destination = "store:arm/r0"
platforms = ["linux/arm64"]
rewrite_index = true
[job.tags]
list = ["v2.0.0"]

[[job]]
name = "refs"
source = "docker://{sh}/{r0}"
destination = "docker://{dh}/refs/r0"
referrers = true
[job.tags]
list = ["v1.0.0"]
"#,
        r0 = mirror_repo(0)
    ));
    for (job, repo, want) in [
        ("glob", "glob/r1", s(&["v1.0.0", "v1.1.0"])),
        ("semver", "semver/r1", s(&["v1.1.0", "v2.0.0"])),
        ("latest", "latest/r1", s(&["v1.1.0", "v2.0.0"])),
        ("regex", "regex/r1", s(&["latest"])),
    ] {
        let r = w.run(&c, job, false).await;
        assert!(r.ok(), "{job}: {r:?}");
        assert_eq!(tags(&dh, repo).await, want, "{job}");
        // The bytes are the source's: same digest at both ends.
        for t in &want {
            let a = client(&sh).manifest_head(&r1, t).await.unwrap().unwrap();
            let b = client(&dh).manifest_head(repo, t).await.unwrap().unwrap();
            assert_eq!(a.digest, b.digest, "{job} {t}");
        }
    }

    // Catalog discovery; a missing tag fails alone, the others are copied.
    let r = w.run(&c, "catalog", false).await;
    assert!(!r.ok());
    assert_eq!(r.copied.len(), 2, "{r:?}");
    assert_eq!(r.failed.len(), 2, "{r:?}");
    assert!(r.failed[0].reason.as_deref().unwrap().contains("not found"));
    assert_eq!(tags(&dh, "cat/mirror/r01").await, s(&["latest"]));
    assert_eq!(tags(&dh, "cat/mirror/r02").await, s(&["latest"]));
    assert!(tags(&dh, "cat/mirror/r00").await.is_empty());

    // Platforms: a rewritten index holding only arm64, in the store.
    let r = w.run(&c, "arm", false).await;
    assert!(r.ok(), "{r:?}");
    let d = w
        .store
        .resolve(&"arm/r0:v2.0.0".parse::<StoreRef>().unwrap())
        .unwrap();
    let (_, view) = w.store.manifest(&d).unwrap();
    let plats: Vec<String> = view
        .manifests
        .iter()
        .map(|m| m.platform.as_ref().unwrap().to_string())
        .collect();
    assert_eq!(plats, ["linux/arm64"]);
    assert_ne!(
        Some(d.to_string()),
        r.copied[0].digest,
        "a rewritten index has a new digest"
    );

    // Referrers: the SBOM of the amd64 image travels with it.
    let r = w.run(&c, "refs", false).await;
    assert!(r.ok(), "{r:?}");
    let idx = client(&dh).manifest_get("refs/r0", "v1.0.0").await.unwrap();
    let view = sealift_oci::ManifestView::parse(&idx.bytes, Some(&idx.media_type)).unwrap();
    let amd64 = &view.manifests[0].digest;
    let src_refs = client(&sh)
        .referrers(&mirror_repo(0), amd64, None)
        .await
        .unwrap();
    let dst_refs = client(&dh).referrers("refs/r0", amd64, None).await.unwrap();
    assert_eq!(src_refs.len(), 1);
    assert_eq!(
        dst_refs.iter().map(|d| &d.digest).collect::<Vec<_>>(),
        src_refs.iter().map(|d| &d.digest).collect::<Vec<_>>()
    );

    // Status and history come from the store.
    let status = job_status(&w.store).unwrap();
    assert_eq!(status.len(), 7 + 1, "every job that ran, seed included");
    let h = job_history(&w.store, Some("catalog"), 5).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].failed.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_op_run_costs_one_tag_list_and_one_head_per_mutable_tag() {
    let w = World::new();
    let src = Registry::start();
    let dst = Registry::start();
    w.seed(&src.host()).await;
    let sp = FaultProxy::start(&src.host());
    let dp = FaultProxy::start(&dst.host());
    let c = w.config(&format!(
        r#"
[[job]]
name = "mirror"
source = "docker://{}/{}"
destination = "docker://{}/m/r0"
immutable_tags = ["v1.*"]
"#,
        sp.host(),
        mirror_repo(0),
        dp.host()
    ));
    let r = w.run(&c, "mirror", false).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.copied.len(), 5);
    assert_eq!(tags(&dst.host(), "m/r0").await, s(TAGS));
    // What the job remembers: the source digest and ETag, where it went.
    let st = sealift_sync::job::state::get(&w.store, "mirror", &mirror_repo(0), "latest")
        .unwrap()
        .unwrap();
    let head = client(&src.host())
        .manifest_head(&mirror_repo(0), "latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.source_digest, head.digest.to_string());
    assert_eq!(st.destination_digest, st.source_digest);
    assert!(st.etag.is_some());
    assert_eq!(
        st.destination,
        format!("docker://{}/m/r0:latest", dp.host())
    );
    sp.clear();
    dp.clear();

    let r = w.run(&c, "mirror", false).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.skipped.len(), 5);
    assert!(r.copied.is_empty());
    let reqs = sp.requests();
    let lists: Vec<_> = reqs
        .iter()
        .filter(|q| q.method == "GET" && q.path.contains("/tags/list"))
        .collect();
    let heads: Vec<_> = reqs.iter().filter(|q| q.method == "HEAD").collect();
    assert_eq!(lists.len(), 1, "{reqs:#?}");
    // 5 tags, 2 of them immutable (v1.0.0, v1.1.0): 3 HEADs.
    assert_eq!(heads.len(), 3, "{reqs:#?}");
    assert_eq!(reqs.len(), 4, "nothing else at the source: {reqs:#?}");
    assert!(dp.requests().is_empty(), "{:#?}", dp.requests());

    // A changed tag is noticed by its HEAD and copied; the rest stays skipped.
    // r1:dev-x becomes r0:dev-x at the source.
    let c2 = w.config(&format!(
        "[[job]]\nname = \"retag\"\nsource = \"docker://{sh}/{r1}\"\ndestination = \"docker://{sh}/{r0}\"\n[job.tags]\nlist = [\"dev-x\"]\n",
        sh = src.host(),
        r1 = mirror_repo(1),
        r0 = mirror_repo(0)
    ));
    let r = w.run(&c2, "retag", false).await;
    assert!(r.ok(), "{r:?}");
    sp.clear();
    let r = w.run(&c, "mirror", false).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.copied.len(), 1, "{r:?}");
    assert!(r.copied[0].source.ends_with(":dev-x"));
    assert_eq!(r.skipped.len(), 4);
    let a = client(&src.host())
        .manifest_head(&mirror_repo(1), "dev-x")
        .await
        .unwrap()
        .unwrap();
    let b = client(&dst.host())
        .manifest_head("m/r0", "dev-x")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.digest, b.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_keep_last_and_prune_gone_honour_dry_run() {
    let w = World::new();
    let dst = Registry::start_with(RegistryOptions {
        delete_enabled: true,
        ..Default::default()
    });
    let dh = dst.host();
    let c = w.config(&format!(
        r#"
[[job]]
name = "in"
source = "oci:corpus"
destination = "store:"

[[job]]
name = "out"
source = "store:{r1}"
destination = "docker://{dh}/ret/r1"
[job.tags]
semver = ">=1"
[job.retention]
keep_last = 2
prune_gone = true
"#,
        r1 = mirror_repo(1)
    ));
    assert!(w.run(&c, "in", false).await.ok());

    // Dry run: the plan, nothing written. keep_last = 2: v1.0.0 is never copied.
    let r = w.run(&c, "out", true).await;
    assert_eq!(r.copied.len(), 2, "{r:?}");
    assert!(r.copied.iter().all(|i| i.outcome == "would copy"));
    assert!(r.bytes > 0);
    assert!(tags(&dh, "ret/r1").await.is_empty());
    assert!(job_history(&w.store, Some("out"), 5).unwrap().is_empty());

    let r = w.run(&c, "out", false).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.copied.len(), 2);
    assert!(r.pruned.is_empty(), "{r:?}");
    assert_eq!(tags(&dh, "ret/r1").await, s(&["v1.1.0", "v2.0.0"]));

    // v3.0.0 appears at the source: v1.1.0 falls out of the last two. Dry run first.
    let repo: sealift_oci::Repo = mirror_repo(1).parse().unwrap();
    let other = w
        .store
        .resolve(
            &format!("{}:latest", mirror_repo(1))
                .parse::<StoreRef>()
                .unwrap(),
        )
        .unwrap();
    w.store
        .set_tag(&repo, &"v3.0.0".parse().unwrap(), &other)
        .unwrap();
    let r = w.run(&c, "out", true).await;
    assert_eq!(r.copied.len(), 1, "{r:?}");
    assert_eq!(r.pruned.len(), 1, "{r:?}");
    assert!(!r.pruned[0].removed);
    assert_eq!(r.pruned[0].reason, "beyond keep_last");
    assert!(r.pruned[0].destination.ends_with(":v1.1.0"));
    assert_eq!(tags(&dh, "ret/r1").await, s(&["v1.1.0", "v2.0.0"]));
    let r = w.run(&c, "out", false).await;
    assert!(r.ok(), "{r:?}");
    assert!(r.pruned[0].removed, "{r:?}");
    assert_eq!(tags(&dh, "ret/r1").await, s(&["v2.0.0", "v3.0.0"]));

    // v3.0.0 leaves the source: a dry run says so and removes nothing...
    assert!(w
        .store
        .remove_tag(&repo, &"v3.0.0".parse().unwrap())
        .unwrap());
    let r = w.run(&c, "out", true).await;
    assert_eq!(r.pruned.len(), 1, "{r:?}");
    assert!(!r.pruned[0].removed);
    assert_eq!(r.pruned[0].reason, "gone from source");
    assert_eq!(tags(&dh, "ret/r1").await, s(&["v2.0.0", "v3.0.0"]));
    // ...a real run removes it, and v1.1.0 is among the last two again.
    let r = w.run(&c, "out", false).await;
    assert!(r.ok(), "{r:?}");
    assert!(r.pruned[0].removed, "{r:?}");
    assert_eq!(r.copied.len(), 1);
    assert_eq!(tags(&dh, "ret/r1").await, s(&["v1.1.0", "v2.0.0"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_during_a_sync_takes_nothing_the_sync_needs() {
    let w = World::new();
    let c = w.config("[[job]]\nname = \"in\"\nsource = \"oci:corpus\"\ndestination = \"store:\"\nreferrers = true\n");
    let store = w.store.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            // No grace period: only leases and tags protect what the sync writes.
            let opts = GcOptions {
                dry_run: false,
                grace: Duration::ZERO,
            };
            while !done.load(std::sync::atomic::Ordering::Relaxed) || runs == 0 {
                store.gc(&opts).unwrap();
                runs += 1;
            }
            runs
        })
    };
    let r = w.run(&c, "in", false).await;
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = gc.join().unwrap();
    assert!(runs >= 1);
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.copied.len(), 15);
    // Every tag's graph is whole and every byte is right, even after one more GC.
    store
        .gc(&GcOptions {
            dry_run: false,
            grace: Duration::ZERO,
        })
        .unwrap();
    for t in store.tags().unwrap() {
        store.walk(&t.digest).unwrap();
    }
    let v = store
        .verify(VerifyOptions {
            full: true,
            repair: false,
        })
        .unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(store.tags().unwrap().len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_copied_index_is_healed_without_refetching_its_copied_child() {
    let w = World::new();
    let src = Registry::start();
    w.seed(&src.host()).await;
    let sp = FaultProxy::start(&src.host());
    let r0 = mirror_repo(0);
    // The amd64 child of r0:v1.0.0 alone is already in the store (as a killed copy of the
    // index leaves it: children first, the index and the tag never written).
    let idx = client(&src.host())
        .manifest_get(&r0, "v1.0.0")
        .await
        .unwrap();
    let view = sealift_oci::ManifestView::parse(&idx.bytes, Some(&idx.media_type)).unwrap();
    let amd64: Digest = view.manifests[0].digest.clone();
    let c = w.config(&format!(
        "[[job]]\nname = \"child\"\nsource = \"docker://{h}/{r0}\"\ndestination = \"store:half\"\nplatforms = [\"linux/amd64\"]\n[job.tags]\nlist = [\"v1.0.0\"]\n\n[[job]]\nname = \"all\"\nsource = \"docker://{h}/{r0}\"\ndestination = \"store:half\"\n[job.tags]\nlist = [\"v1.0.0\"]\n",
        h = sp.host()
    ));
    assert!(w.run(&c, "child", false).await.ok());
    let amd64_blobs: Vec<Digest> = w
        .store
        .walk(&amd64)
        .unwrap()
        .0
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    assert!(amd64_blobs.len() >= 3);
    sp.clear();
    let r = w.run(&c, "all", false).await;
    assert!(r.ok(), "{r:?}");
    let d = w
        .store
        .resolve(&"half:v1.0.0".parse::<StoreRef>().unwrap())
        .unwrap();
    assert_eq!(d, idx.digest);
    let g = w.store.walk(&d).unwrap();
    assert!(g.0.iter().any(|(x, _)| x == &amd64));
    let fetched: Vec<String> = sp
        .requests()
        .into_iter()
        .filter(|q| q.method == "GET" && q.path.contains("/blobs/"))
        .map(|q| q.path)
        .collect();
    assert!(!fetched.is_empty(), "the arm64 image was fetched");
    for b in &amd64_blobs {
        assert!(
            !fetched.iter().any(|p| p.contains(&b.to_string())),
            "{b} was fetched again: {fetched:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deep_index_chain_fails_its_image_and_the_job_goes_on() {
    let w = World::new();
    let src = Registry::start();
    w.seed(&src.host()).await;
    let sh = src.host();
    let top = common::push_deep_chain(&sh, "deep/chain", "1", 10_000).await;
    let c = w.config(&format!(
        "[[job]]\nname = \"all\"\nsource = \"docker://{sh}\"\ndestination = \"store:\"\n"
    ));
    let r = w.run(&c, "all", false).await;
    assert_eq!(r.copied.len(), 15, "{r:?}");
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let failed = &r.failed[0];
    let reason = failed.reason.as_deref().unwrap_or_default();
    assert!(failed.source.ends_with("deep/chain:1"), "{failed:?}");
    assert!(
        reason.contains(&top.to_string()) && reason.contains("nests more than 16 manifests deep"),
        "{reason}"
    );
    // The report is kept, naming the image, for `sync history`.
    let history = job_history(&w.store, Some("all"), 1).unwrap();
    assert_eq!(history[0].failed[0].source, failed.source);
    assert!(w
        .store
        .tags()
        .unwrap()
        .iter()
        .all(|t| !t.repo.to_string().contains("deep")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_destination_and_a_tarball_source_go_through_their_places() {
    let w = World::new();
    let c = w.config(
        r#"
[[job]]
name = "in"
source = "oci:corpus"
destination = "store:"
referrers = true

[[job]]
name = "bundle"
source = "store:"
destination = "oci-archive:out/all.tar"
referrers = true

[[job]]
name = "back"
source = "oci-archive:out/all.tar"
destination = "store:back"
"#,
    );
    assert!(w.run(&c, "in", false).await.ok());
    let tar = w.tmp.path().join("out/all.tar");

    // Dry run: the plan, no file.
    let r = w.run(&c, "bundle", true).await;
    assert_eq!(r.copied.len(), 15, "{r:?}");
    assert!(r.copied.iter().all(|i| i.outcome == "would copy"));
    assert!(!tar.exists());

    let r = w.run(&c, "bundle", false).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.copied.len(), 15);
    assert!(r.bytes > 0);
    let one = r
        .copied
        .iter()
        .find(|i| i.source == format!("store:{}:latest", mirror_repo(1)))
        .unwrap();
    assert_eq!(
        one.destination,
        format!("oci-archive:{}:{}:latest", tar.display(), mirror_repo(1))
    );
    assert!(tar.is_file());
    // Nothing changed: not written again.
    let r = w.run(&c, "bundle", false).await;
    assert!(r.ok(), "{r:?}");
    assert!(r.copied.is_empty());
    assert_eq!(r.skipped.len(), 15);
    assert!(r
        .skipped
        .iter()
        .all(|i| i.reason.as_deref() == Some("bundle unchanged")));

    // The tarball as a source (scanned once for the whole job): the same digests arrive.
    let r = w.run(&c, "back", false).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.copied.len(), 15);
    for t in TAGS {
        for i in 0..3 {
            let a = w
                .store
                .resolve(
                    &format!("{}:{t}", mirror_repo(i))
                        .parse::<StoreRef>()
                        .unwrap(),
                )
                .unwrap();
            let b = w
                .store
                .resolve(
                    &format!("back/{}:{t}", mirror_repo(i))
                        .parse::<StoreRef>()
                        .unwrap(),
                )
                .unwrap();
            assert_eq!(a, b, "{i} {t}");
        }
    }
    let r = w.run(&c, "back", false).await;
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.skipped.len(), 15, "{r:?}");
    assert!(r
        .skipped
        .iter()
        .all(|i| i.reason.as_deref() == Some("unchanged")));
}
