//! Issue 14, part 2: image lists from Kubernetes manifests (`images-from`, `export
//! --images-from`, a job's `images_from`, `--pin`) against the real registry.

use sealift_fixtures::{mirror_corpus, mirror_repo, Layout};
use sealift_testkit::Registry;
use serde_json::Value;

use super::util::*;

/// A registry holding the mirror corpus (3 repositories, tags 1.0 and 1.1).
fn seeded_registry(env: &Env) -> (Registry, Layout) {
    let layout = mirror_corpus(3, &["1.0", "1.1"], 4096);
    layout.write_dir(&env.path("corpus")).unwrap();
    let reg = Registry::start();
    let seed = env.path("seed.toml");
    std::fs::write(
        &seed,
        format!(
            "[[job]]\nname = \"seed\"\nsource = \"oci:corpus\"\ndestination = \"docker://{}\"\n",
            reg.host()
        ),
    )
    .unwrap();
    env.ok(&["sync", "--config", seed.to_str().unwrap()]);
    (reg, layout)
}

/// `helm template`-style output naming two of the registry's images (one twice), an image
/// of Docker Hub, and kinds that hold no pod spec.
fn manifests(host: &str) -> String {
    let (r0, r1) = (mirror_repo(0), mirror_repo(1));
    format!(
        r#"---
# Source: app/templates/config.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  image: {host}/{r1}:1.0
---
# Source: app/templates/web.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
        - name: init
          image: {host}/{r1}:1.1
      containers:
        - name: web
          image: "{host}/{r0}:1.0"
        - name: proxy
          image: nginx:1.25
---
# Source: app/templates/backup.yaml
apiVersion: batch/v1
kind: CronJob
metadata:
  name: backup
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
            - name: backup
              image: {host}/{r0}:1.0
"#
    )
}

#[test]
fn images_from_manifests_drive_sync_pin_and_export() {
    let env = Env::new();
    let (reg, layout) = seeded_registry(&env);
    let host = reg.host();
    let (r0, r1) = (mirror_repo(0), mirror_repo(1));
    std::fs::write(env.path("app.yaml"), manifests(&host)).unwrap();
    let app = env.path("app.yaml");
    let app = app.to_str().unwrap();

    // Normalised, each once, in first-seen order; ConfigMap data is not an image.
    let listed = env.ok(&["images-from", app]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        vec![
            format!("{host}/{r1}:1.1"),
            format!("{host}/{r0}:1.0"),
            "docker.io/library/nginx:1.25".to_string(),
        ]
    );
    let json: Value = serde_json::from_str(&env.ok(&["--json", "images-from", app])).unwrap();
    assert_eq!(json[2]["host"], "docker.io");
    assert_eq!(json[2]["repository"], "library/nginx");
    assert_eq!(json[2]["store"], "docker.io/library/nginx:1.25");
    assert_eq!(json[0]["file"], app);

    // A job whose source is the registry copies that registry's images of the list (Docker
    // Hub's is another job's), into the store under the registry's name, as pull does.
    let job = format!(
        "[[job]]\nname = \"app\"\nsource = \"docker://{host}\"\ndestination = \"store:\"\nimages_from = [\"app.yaml\"]\n"
    );
    let cfg = env.path("sync.toml");
    std::fs::write(
        &cfg,
        format!(
            "{job}\n[[job]]\nname = \"bundle\"\nsource = \"store:\"\ndestination = \"oci-archive:out/app.tar\"\nimages_from = [\"pinned.txt\"]\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(env.path("out")).unwrap();
    // The bundle job's list does not exist yet: loading the config names it and stops.
    let err = env.fails(&["sync", "--config", cfg.to_str().unwrap(), "--job", "app"]);
    assert!(
        err.contains("sync.toml:11:")
            && err.contains("job[1].images_from")
            && err.contains("pinned.txt"),
        "{err}"
    );
    let app_cfg = env.path("app.toml");
    std::fs::write(&app_cfg, &job).unwrap();
    env.ok(&["sync", "--config", app_cfg.to_str().unwrap()]);
    let want = vec![
        (
            format!("{host}/{r0}:1.0"),
            ref_digest(&layout, &format!("{r0}:1.0")),
        ),
        (
            format!("{host}/{r1}:1.1"),
            ref_digest(&layout, &format!("{r1}:1.1")),
        ),
    ];
    assert_eq!(env.images(), want);

    // Pinning needs every image in the store: nginx is not, and is named.
    let err = env.fails(&["images-from", "--pin", app]);
    assert!(
        err.contains("docker.io/library/nginx:1.25") && err.contains("not in the store"),
        "{err}"
    );
    let mine = env.path("mine.txt");
    std::fs::write(
        &mine,
        format!("# the registry's images\n{host}/{r0}:1.0\n{host}/{r1}:1.1  # init\n"),
    )
    .unwrap();
    let pinned = env.path("pinned.txt");
    env.ok(&[
        "images-from",
        "--pin",
        mine.to_str().unwrap(),
        "-o",
        pinned.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&pinned).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        vec![
            format!("{}@{}", want[0].0, want[0].1),
            format!("{}@{}", want[1].0, want[1].1),
        ]
    );

    // export --images-from takes the pinned list; the bundle imports elsewhere as the same
    // images. The store-sourced bundle job writes the same set.
    let bundle = env.path("pinned.tar");
    env.ok(&[
        "export",
        "--images-from",
        pinned.to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    env.ok(&["sync", "--config", cfg.to_str().unwrap(), "--job", "bundle"]);
    for tar in [bundle, env.path("out/app.tar")] {
        let site = Env::new();
        site.ok(&["import", tar.to_str().unwrap()]);
        assert_eq!(site.images(), want, "{}", tar.display());
    }
    // A pinned entry whose tag has moved since is refused, naming it.
    env.ok(&["tag", &want[1].0, &want[0].0]);
    let err = env.fails(&[
        "export",
        "--images-from",
        pinned.to_str().unwrap(),
        "-o",
        env.path("moved.tar").to_str().unwrap(),
    ]);
    assert!(
        err.contains(&want[0].0) && err.contains(&format!("now names {}", want[1].1)),
        "{err}"
    );
    // The list names an image the store lacks: export says which.
    let err = env.fails(&[
        "export",
        "--images-from",
        app,
        "-o",
        env.path("x.tar").to_str().unwrap(),
    ]);
    assert!(err.contains("docker.io/library/nginx:1.25"), "{err}");
    // mirror-config --job maps the hosts a job fetches from, without the store (a daemon
    // or serve may hold it): the bundle job's pinned list names the registry's images.
    let nodes = env.path("nodes");
    let printed = env.ok(&[
        "mirror-config",
        "--config",
        cfg.to_str().unwrap(),
        "--job",
        "bundle",
        "--server",
        "mirror.site:5443",
        "--format",
        "k3s",
        "-o",
        nodes.to_str().unwrap(),
    ]);
    assert!(
        printed.contains(&format!("Mapped {host} to mirror.site:5443")),
        "{printed}"
    );
    let yaml = std::fs::read_to_string(nodes.join("registries.yaml")).unwrap();
    assert!(yaml.contains(&format!("\"{host}\":")), "{yaml}");

    // A job reads its lists again at every run: an image added to the manifest is copied.
    let r2 = mirror_repo(2);
    let mut yaml = manifests(&host);
    yaml.push_str(&format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: extra}}\nspec: {{containers: [{{name: x, image: \"{host}/{r2}:1.1\"}}]}}\n"
    ));
    std::fs::write(env.path("app.yaml"), yaml).unwrap();
    env.ok(&["sync", "--config", app_cfg.to_str().unwrap()]);
    let added = (
        format!("{host}/{r2}:1.1"),
        ref_digest(&layout, &format!("{r2}:1.1")),
    );
    assert!(env.images().contains(&added), "{:?}", env.images());
}

#[test]
fn bad_manifests_are_refused_naming_file_document_and_line() {
    let env = Env::new();
    std::fs::write(
        env.path("bad.yaml"),
        "kind: Pod\nspec: {containers: [{name: a, image: alpine}]}\n---\nkind: Deployment\nspec:\n  template: [\n",
    )
    .unwrap();
    let err = env.fails(&["images-from", env.path("bad.yaml").to_str().unwrap()]);
    assert!(
        err.contains("bad.yaml: document 2: ") && err.contains(" line "),
        "{err}"
    );
    let cfg = env.path("sync.toml");
    std::fs::write(
        &cfg,
        "[[job]]\nname = \"x\"\nsource = \"docker://registry.example:5000\"\ndestination = \"store:\"\n\
         images_from = [\"bad.yaml\"]\n",
    )
    .unwrap();
    let err = env.fails(&["sync", "--config", cfg.to_str().unwrap()]);
    assert!(
        err.contains("sync.toml:5:")
            && err.contains("job[0].images_from")
            && err.contains("document 2"),
        "{err}"
    );
    std::fs::write(env.path("ok.txt"), "alpine\n").unwrap();
    std::fs::write(
        &cfg,
        "[[job]]\nname = \"x\"\nsource = \"docker://registry.example:5000\"\ndestination = \"store:\"\n\
         images_from = [\"ok.txt\"]\n",
    )
    .unwrap();
    let err = env.fails(&["sync", "--config", cfg.to_str().unwrap()]);
    assert!(
        err.contains("no image of registry.example:5000") && err.contains("docker.io"),
        "{err}"
    );
}
