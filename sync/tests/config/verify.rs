//! `[job.verify]`: key and trusted-root files resolved against the
//! config's folder and read at load; every wrong key, value or file is an error naming
//! `file:line:col: job[N].verify.KEY`.

use std::path::Path;
use std::process::Command;

use sealift_sync::Config;

const JOB: &str =
    "[[job]]\nname = \"a\"\nsource = \"docker://r.example/x\"\ndestination = \"store:\"\n";

/// A P-256 public key made by openssl in `dir` (a missing openssl fails with how to get it).
fn public_key(dir: &Path, name: &str) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            private.to_str().unwrap(),
        ],
        vec![
            "pkey",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("openssl is not installed ({e}): run scripts/setup.sh"));
        assert!(out.status.success(), "openssl {args:?} failed");
    }
}

/// `error_in` without the text as shown.
fn error(dir: &Path, text: &str) -> (usize, usize, String, String) {
    let (line, column, key, message, _) = super::error_in(dir, text);
    (line, column, key, message)
}

#[test]
fn verify_keys_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    public_key(&dir.path().join("keys"), "a");
    public_key(dir.path(), "b");
    let p = dir.path().join("sync.toml");
    std::fs::write(
        &p,
        format!("{JOB}[job.verify]\nkeys = [\"keys/a.pub\", \"b.pub\"]\n"),
    )
    .unwrap();
    let config = Config::load(&p).unwrap();
    let policy = config.jobs[0].verify.as_ref().expect("a policy");
    assert_eq!(policy.keys().len(), 2);
    assert_eq!(policy.keyless_identity(), None);
    // No table: no policy.
    std::fs::write(&p, JOB).unwrap();
    assert!(Config::load(&p).unwrap().jobs[0].verify.is_none());
}

#[test]
fn verify_errors_name_the_file_line_column_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    public_key(d, "good");
    std::fs::write(d.join("junk.pub"), "not a key\n").unwrap();

    // A key file that is not there, the second of two: pointed at.
    let (line, col, key, msg) = error(
        d,
        &format!("{JOB}[job.verify]\nkeys = [\"good.pub\", \"missing.pub\"]\n"),
    );
    assert_eq!((line, col, key.as_str()), (6, 21, "job[0].verify.keys"));
    assert!(msg.contains("missing.pub"), "{msg}");

    // A file that is not a PEM public key.
    let (line, col, key, msg) = error(d, &format!("{JOB}[job.verify]\nkeys = [\"junk.pub\"]\n"));
    assert_eq!((line, col, key.as_str()), (6, 9, "job[0].verify.keys"));
    assert!(msg.contains("not a usable public key"), "{msg}");

    // Keyless needs identity, issuer and trusted_root together.
    let (line, col, key, msg) = error(
        d,
        &format!("{JOB}[job.verify]\nidentity = \"ci@example.com\"\n"),
    );
    assert_eq!((line, col, key.as_str()), (6, 12, "job[0].verify.identity"));
    assert!(msg.contains("missing: issuer, trusted_root"), "{msg}");
    let (line, _, key, msg) = error(
        d,
        &format!("{JOB}[job.verify]\nkeys = [\"good.pub\"]\nissuer = \"https://issuer.example\"\n"),
    );
    assert_eq!((line, key.as_str()), (7, "job[0].verify.issuer"));
    assert!(msg.contains("missing: identity, trusted_root"), "{msg}");

    // A trusted root that is not there.
    let (line, col, key, msg) = error(
        d,
        &format!(
            "{JOB}[job.verify]\nidentity = \"ci@example.com\"\nissuer = \"https://i.example\"\n\
             trusted_root = \"root.json\"\n"
        ),
    );
    assert_eq!(
        (line, col, key.as_str()),
        (8, 16, "job[0].verify.trusted_root")
    );
    assert!(msg.contains("root.json"), "{msg}");

    // An unknown key, a value of the wrong type, an empty table.
    let (line, col, key, msg) = error(d, &format!("{JOB}[job.verify]\nkey = \"good.pub\"\n"));
    assert_eq!((line, col, key.as_str()), (6, 1, "key"));
    assert!(msg.contains("unknown field"), "{msg}");
    let (line, _, _, msg) = error(d, &format!("{JOB}[job.verify]\nkeys = \"good.pub\"\n"));
    assert_eq!(line, 6);
    assert!(msg.contains("sequence") || msg.contains("array"), "{msg}");
    let (line, _, key, msg) = error(d, &format!("{JOB}[job.verify]\n"));
    assert_eq!((line, key.as_str()), (5, "job[0].verify"));
    assert!(msg.contains("keys"), "{msg}");

    // A bundle destination (its images are already in the store) takes no policy.
    let (line, _, key, _) = error(
        d,
        "[[job]]\nname = \"b\"\nsource = \"store:\"\ndestination = \"oci-archive:out.tar\"\n\
         [job.verify]\nkeys = [\"good.pub\"]\n",
    );
    assert_eq!((line, key.as_str()), (5, "job[0].verify"));
}
