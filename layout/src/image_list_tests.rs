//! Unit tests of image-list parsing (`image_list.rs`).

use super::*;

fn names(text: &str, file: &str) -> Vec<String> {
    parse_list(text, Path::new(file))
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn error(text: &str, file: &str) -> String {
    match parse_list(text, Path::new(file)) {
        Ok(v) => panic!("parsed: {v:?}"),
        Err(e) => e.to_string(),
    }
}

const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[test]
fn helm_template_output_with_every_workload_kind() {
    // As `helm template` writes it: `---` then a `# Source:` comment per template, an
    // empty document where a template rendered nothing, non-workload kinds in between.
    let text = format!(
        r#"---
# Source: app/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
---
# Source: app/templates/empty.yaml
---
# Source: app/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: "registry.example.com:5000/tools/migrate:2"
      containers:
        - name: web
          image: nginx:1.25
        - name: sidecar
          image: quay.io/prometheus/node-exporter
---
# Source: app/templates/cronjob.yaml
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
              image: busybox@{DIGEST}
---
apiVersion: v1
kind: Pod
metadata:
  name: debug
spec:
  containers:
    - name: main
      image: nginx:1.25
  ephemeralContainers:
    - name: dbg
      image: localhost:5000/debug:v1
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: db}}
spec: {{template: {{spec: {{containers: [{{name: db, image: "postgres:16"}}]}}}}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: agent}}
spec: {{template: {{spec: {{containers: [{{name: a, image: "ghcr.io/org/agent:1@{DIGEST}"}}]}}}}}}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: once}}
spec: {{template: {{spec: {{containers: [{{name: j, image: "alpine"}}]}}}}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: c}}
data: {{image: "not/an/image:really"}}
"#
    );
    assert_eq!(
        names(&text, "rendered.yaml"),
        vec![
            "registry.example.com:5000/tools/migrate:2".to_string(),
            "docker.io/library/nginx:1.25".into(),
            "quay.io/prometheus/node-exporter:latest".into(),
            format!("docker.io/library/busybox@{DIGEST}"),
            "localhost:5000/debug:v1".into(),
            "docker.io/library/postgres:16".into(),
            format!("ghcr.io/org/agent:1@{DIGEST}"),
            "docker.io/library/alpine:latest".into(),
        ]
    );
}

#[test]
fn list_kinds_are_read_item_by_item() {
    let text = r#"apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: a}
    spec: {template: {spec: {containers: [{name: a, image: "a:1"}]}}}
  - apiVersion: v1
    kind: PodList
    items:
      - kind: Pod
        metadata: {name: p}
        spec: {containers: [{name: p, image: "b:2"}]}
"#;
    // Not named .yaml: recognised by its content, JSON too.
    assert_eq!(
        names(text, "kubectl-get-output"),
        vec!["docker.io/library/a:1", "docker.io/library/b:2"]
    );
    let json = r#"{"kind": "Pod", "spec": {"containers": [{"name": "c", "image": "c:3"}]}}"#;
    assert_eq!(names(json, "pod"), vec!["docker.io/library/c:3"]);
}

#[test]
fn text_lists_take_comments_and_blank_lines() {
    let text = "# images for the site\n\nnginx:1.25   # the web tier\n  quay.io/x/y\nnginx:1.25\n";
    assert_eq!(
        names(text, "images.txt"),
        vec!["docker.io/library/nginx:1.25", "quay.io/x/y:latest"]
    );
    let e = error("nginx\nnginx: 1.25\n", "images.txt");
    assert!(e.contains("images.txt: line 2"), "{e}");
    let e = error("nginx\n\nNGINX\n", "images.txt");
    assert!(
        e.contains("images.txt: line 3") && e.contains("NGINX"),
        "{e}"
    );
}

#[test]
fn malformed_yaml_names_the_document_and_line() {
    let text =
        "kind: Pod\nspec: {containers: [{image: a}]}\n---\nkind: Pod\nspec:\n  containers: [\n";
    let e = error(text, "bad.yaml");
    assert!(
        e.starts_with("bad.yaml: document 2: ") && e.contains(" line "),
        "{e}"
    );
    let text =
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'UPPER/case'}]}\n";
    let e = error(text, "bad.yaml");
    assert!(
        e.contains("document 1 (Pod p): spec.containers[0].image") && e.contains("UPPER/case"),
        "{e}"
    );
    let text = "kind: Pod\nmetadata: {name: p}\nspec: {initContainers: [{name: c}]}\n";
    let e = error(text, "bad.yaml");
    assert!(
        e.contains("spec.initContainers[0].image: container \"c\" has no image"),
        "{e}"
    );
}

#[test]
fn alias_bombs_are_refused() {
    // A billion-laughs document: nine levels of nine aliases each.
    let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in "bcdefghij".chars() {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        text.push_str(&format!("{c}: &{c} [{refs}]\n"));
        prev = c;
    }
    text.push_str("kind: Pod\n");
    let e = error(&text, "bomb.yaml");
    assert!(
        e.contains("bomb.yaml: document 1") && e.contains("limit"),
        "{e}"
    );
}

#[test]
fn files_are_bounded_and_deduplicated_across_lists() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, "nginx:1.25\nalpine\n").unwrap();
    std::fs::write(
        &b,
        "kind: Pod\nspec: {containers: [{name: x, image: alpine}, {name: y, image: redis}]}\n",
    )
    .unwrap();
    let got = read_lists(&[a.clone(), b.clone()]).unwrap();
    let got: Vec<(String, PathBuf)> = got
        .into_iter()
        .map(|l| (l.image.to_string(), l.file))
        .collect();
    assert_eq!(
        got,
        vec![
            ("docker.io/library/nginx:1.25".into(), a.clone()),
            ("docker.io/library/alpine:latest".into(), a.clone()),
            ("docker.io/library/redis:latest".into(), b.clone()),
        ]
    );
    let big = dir.path().join("big.txt");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_LIST_SIZE + 1).unwrap();
    let e = read_list(&big).unwrap_err().to_string();
    assert!(e.contains("larger than"), "{e}");
}
