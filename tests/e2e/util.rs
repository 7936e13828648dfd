//! Helpers: the sealift binary, temp stores, real tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of the sealift binary. `cargo test --workspace` has just built it; when it is
/// missing, older than the sources, or built from another checkout sharing the target
/// directory (its dep-info names other source paths), build it once. (Always running
/// `cargo build -p sealift` would rebuild dependencies with different features.) Several
/// checkouts may share one target directory, whose `debug/sealift` each build replaces, so
/// the tests run a copy named after this checkout.
pub fn sealift_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("target"));
        let bin = target.join("debug").join("sealift");
        let cli = root().join("cli/src/main.rs");
        let cli = cli.canonicalize().unwrap_or(cli);
        let ours = || {
            std::fs::read_to_string(target.join("debug").join("sealift.d"))
                .is_ok_and(|d| d.contains(&*cli.to_string_lossy()))
        };
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        let fresh = built.is_some_and(|b| {
            [
                "cli/src",
                "oci/src",
                "registry/src",
                "layout/src",
                "copy/src",
                "store/src",
                "sync/src",
                "serve/src",
                "Cargo.lock",
            ]
            .iter()
            .all(|p| newest(&root().join(p)).is_none_or(|n| n <= b))
        });
        if !(fresh && ours()) {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "sealift", "--bin", "sealift"])
                .current_dir(root())
                .status()
                .expect("running cargo build -p sealift");
            assert!(status.success(), "cargo build -p sealift failed");
        }
        let root_id = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            cli.hash(&mut h);
            h.finish()
        };
        let copy = target
            .join("debug")
            .join(format!("sealift-e2e-{root_id:016x}"));
        let tmp = copy.with_extension(format!("tmp{}", std::process::id()));
        std::fs::copy(&bin, &tmp).expect("copying the sealift binary");
        std::fs::rename(&tmp, &copy).expect("renaming the sealift binary copy");
        assert!(
            ours(),
            "{} was replaced by a build from another checkout while it was copied; run again",
            bin.display()
        );
        copy
    })
    .clone()
}

fn newest(p: &Path) -> Option<std::time::SystemTime> {
    let m = std::fs::metadata(p).ok()?;
    if m.is_file() {
        return m.modified().ok();
    }
    std::fs::read_dir(p)
        .ok()?
        .flatten()
        .filter_map(|e| newest(&e.path()))
        .max()
}

/// A temporary store directory and a way to run sealift on it.
pub struct Env {
    pub dir: tempfile::TempDir,
    /// Applied to every command (a store on S3 passes its server's settings).
    pub setup: Option<fn(&mut Command)>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
            setup: None,
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(sealift_bin());
        c.arg("--store").arg(self.store());
        c.env_remove("SEALIFT_STORE");
        if let Some(setup) = self.setup {
            setup(&mut c);
        }
        c
    }

    /// Run and return the output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running sealift")
    }

    /// Run, insist on success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "sealift {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run, insist on failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "sealift {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `images --json` as (ref, digest) pairs, sorted.
    pub fn images(&self) -> Vec<(String, String)> {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["--json", "images"])).expect("images --json is JSON");
        let mut out: Vec<(String, String)> = v
            .as_array()
            .or_else(|| v.get("images").and_then(|i| i.as_array()))
            .expect("images --json is a list")
            .iter()
            .map(|i| {
                (
                    i["reference"]
                        .as_str()
                        .or(i["ref"].as_str())
                        .unwrap_or_default()
                        .to_string(),
                    i["digest"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

/// A real tool from Debian's packages; a missing one fails the test with how to install it.
pub fn tool(name: &str) -> Command {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{name} is not installed: run scripts/setup.sh (apt-get install {name})"
    );
    Command::new(name)
}

/// Run a tool, insist on success, return stdout bytes.
pub fn tool_ok(name: &str, args: &[&str]) -> Vec<u8> {
    let out = tool(name).args(args).output().expect("running tool");
    assert!(
        out.status.success(),
        "{name} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Unpack `image` (`DIR:REF`) with umoci into `bundle` and check the corpus's base layer
/// files arrived intact.
pub fn umoci_unpacks_base_files(image: &str, bundle: &Path) {
    tool_ok(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            image,
            bundle.to_str().unwrap(),
        ],
    );
    for (file, content) in sealift_fixtures::BASE_LAYER_FILES {
        let got = std::fs::read_to_string(bundle.join("rootfs").join(file.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{file} not unpacked: {e}"));
        assert_eq!(&got, content);
    }
}

/// sha256 of a file, as `sha256:<hex>`.
pub fn file_digest(p: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(p).expect("reading file");
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes)))
}

/// The standard corpus written as a layout directory, with ref names as bare tags.
pub fn corpus_dir(env: &Env) -> (PathBuf, sealift_fixtures::Layout) {
    let layout = sealift_fixtures::corpus();
    let dir = env.path("corpus");
    layout.write_dir(&dir).expect("writing corpus");
    (dir, layout)
}

/// The corpus imported into `env`'s store as `corpus:<name>` tags.
pub fn imported_corpus(env: &Env) -> sealift_fixtures::Layout {
    let (dir, layout) = corpus_dir(env);
    env.ok(&["import", dir.to_str().unwrap(), "--tag", "corpus:latest"]);
    layout
}

/// The digest of the index.json entry named `name`.
pub fn ref_digest(layout: &sealift_fixtures::Layout, name: &str) -> String {
    layout
        .index
        .iter()
        .find(|e| {
            e.pointer("/annotations/org.opencontainers.image.ref.name")
                .and_then(|v| v.as_str())
                == Some(name)
        })
        .and_then(|e| e["digest"].as_str())
        .unwrap_or_else(|| panic!("{name} not in layout"))
        .to_string()
}
