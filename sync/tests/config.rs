//! The sync config's `[serve]` section: checked at load with every other key, its errors
//! naming `file:line:col: serve.KEY`, and what it accepts kept as written; the other
//! sections' errors; `[job.verify]` (in `verify.rs`).

#[path = "config/verify.rs"]
mod verify;

use std::path::Path;

use sealift_sync::config::ServeSection;
use sealift_sync::{Config, ConfigError};

/// Load `text` from a file and return the error's (line, column, key, message, as shown).
fn error(text: &str) -> (usize, usize, String, String, String) {
    let dir = tempfile::tempdir().unwrap();
    error_in(dir.path(), text)
}

/// The same with the file in `dir` (beside the files it names).
fn error_in(dir: &Path, text: &str) -> (usize, usize, String, String, String) {
    let p = dir.join("sync.toml");
    std::fs::write(&p, text).unwrap();
    match Config::load(&p) {
        Ok(c) => panic!("accepted:\n{text}\n{:?}", c.serve),
        Err(e @ ConfigError::Invalid { .. }) => {
            let shown = e.to_string();
            let ConfigError::Invalid {
                file,
                line,
                column,
                key,
                message,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(file, p);
            assert!(
                shown.starts_with(&format!("{}:{line}:{column}: {key}: ", p.display())),
                "{shown}"
            );
            (line, column, key, message, shown)
        }
        Err(e) => panic!("{e}"),
    }
}

const JOB: &str = "[[job]]\nname = \"a\"\nsource = \"store:\"\ndestination = \"oci:out\"\n\n";

#[test]
fn serve_errors_name_the_line_column_and_key() {
    // A value of the wrong type is reported at the value, under its key.
    let (line, col, key, msg, _) = error(&format!(
        "{JOB}[serve]\naddr = \"127.0.0.1:5000\"\nmax_connections = \"many\"\n"
    ));
    assert_eq!((line, col, key.as_str()), (8, 19, "serve.max_connections"));
    assert!(
        msg.contains("whole number") && msg.contains("string"),
        "{msg}"
    );

    let (line, col, key, msg, _) = error("[serve]\ninsecure_plain_http = \"yes\"\n");
    assert_eq!(
        (line, col, key.as_str()),
        (2, 23, "serve.insecure_plain_http")
    );
    assert!(msg.contains("true or false"), "{msg}");

    // An address that does not parse.
    let (line, col, key, msg, _) = error("[serve]\n  addr = \"localhost\"\n");
    assert_eq!((line, col, key.as_str()), (2, 10, "serve.addr"));
    assert!(msg.contains("\"localhost\""), "{msg}");

    // Out of range.
    let (line, col, key, _, _) = error("[serve]\nidle_timeout_secs = 0\n");
    assert_eq!(
        (line, col, key.as_str()),
        (2, 21, "serve.idle_timeout_secs")
    );
    let (line, _, key, _, _) = error("[serve]\nshutdown_grace_secs = -1\n");
    assert_eq!((line, key.as_str()), (2, "serve.shutdown_grace_secs"));
    let (line, _, key, msg, _) = error("[serve]\nredirect_ttl_secs = 7200\n");
    assert_eq!((line, key.as_str()), (2, "serve.redirect_ttl_secs"));
    assert!(msg.contains("3600"), "{msg}");

    // An unknown key is an error like anywhere else in the file, pointing at the key.
    let (line, col, key, msg, _) = error(&format!("{JOB}[serve]\nport = 5000\n"));
    assert_eq!((line, col, key.as_str()), (7, 1, "port"));
    assert!(msg.contains("unknown field"), "{msg}");

    // Half a TLS configuration, and plain HTTP beyond loopback, fail at load, not at bind.
    let (line, key, msg) = {
        let (l, _, k, m, _) = error("[serve]\ntls_key = \"k.pem\"\n");
        (l, k, m)
    };
    assert_eq!((line, key.as_str()), (2, "serve.tls_key"));
    assert!(msg.contains("tls_cert"), "{msg}");
    let (line, _, key, msg, _) = error("[serve]\naddr = \"0.0.0.0:5000\"\n");
    assert_eq!((line, key.as_str()), (2, "serve.addr"));
    assert!(msg.contains("insecure_plain_http"), "{msg}");
    let (line, _, key, _, _) = error("[serve]\nhtpasswd = \"\"\n");
    assert_eq!((line, key.as_str()), (2, "serve.htpasswd"));
}

#[test]
fn a_good_serve_section_is_kept_as_written() {
    let dir = Path::new("/srv/sealift");
    let text = format!(
        "{JOB}[serve]\naddr = \"[::]:5443\"\nhtpasswd = \"users.htpasswd\"\n\
         tls_cert = \"tls/cert.pem\"\ntls_key = \"/etc/k.pem\"\ninsecure_plain_http = false\n\
         shutdown_grace_secs = 0\nidle_timeout_secs = 90\nmax_connections = 100\n\
         redirect_blobs = true\nredirect_ttl_secs = 600\n"
    );
    let c = Config::parse(&text, &dir.join("sync.toml")).unwrap();
    assert_eq!(
        c.serve,
        Some(ServeSection {
            addr: Some("[::]:5443".parse().unwrap()),
            htpasswd: Some(dir.join("users.htpasswd")),
            tls_cert: Some(dir.join("tls/cert.pem")),
            tls_key: Some("/etc/k.pem".into()),
            insecure_plain_http: Some(false),
            shutdown_grace_secs: Some(0),
            idle_timeout_secs: Some(90),
            max_connections: Some(100),
            redirect_blobs: Some(true),
            redirect_ttl_secs: Some(600),
        })
    );
    // Plain HTTP beyond loopback when asked for; keys left out stay unset (serve's defaults).
    let c = Config::parse(
        "[serve]\naddr = \"0.0.0.0:5000\"\ninsecure_plain_http = true\n",
        &dir.join("sync.toml"),
    )
    .unwrap();
    let s = c.serve.unwrap();
    assert_eq!(s.addr, Some("0.0.0.0:5000".parse().unwrap()));
    assert_eq!(s.insecure_plain_http, Some(true));
    assert_eq!(s.max_connections, None);
    assert_eq!(s.tls_cert, None);
}

fn config_error(text: &str) -> (usize, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, text).unwrap();
    match Config::load(&p) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(ConfigError::Invalid {
            file,
            line,
            key,
            message,
            ..
        }) => {
            assert_eq!(file, p);
            let shown = ConfigError::Invalid {
                file: file.clone(),
                line,
                column: 1,
                key: key.clone(),
                message: message.clone(),
            }
            .to_string();
            assert!(shown.contains("bad.toml:"), "{shown}");
            (line, key, message)
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn config_errors_name_the_file_line_and_key() {
    let job =
        "[[job]]\nname = \"a\"\nsource = \"docker://r.example/x\"\ndestination = \"store:\"\n";
    let (line, key, msg) = config_error(&format!("{job}[job.tags]\nsemver = \">= banana\"\n"));
    assert_eq!((line, key.as_str()), (6, "job[0].tags.semver"));
    assert!(msg.contains("semver"), "{msg}");

    let (line, key, msg) =
        config_error(&format!("{job}[job.tags]\nallow_regex = [\"ok\", \"(\"]\n"));
    assert_eq!((line, key.as_str()), (6, "job[0].tags.allow_regex"));
    assert!(msg.contains("regex"), "{msg}");

    let (line, key, _) = config_error(&format!("{job}schedule = \"0 99 * * *\"\n"));
    assert_eq!((line, key.as_str()), (5, "job[0].schedule"));

    let (line, key, msg) =
        config_error("[[job]]\nname = \"a\"\nsource = \"ftp://x/y\"\ndestination = \"store:\"\n");
    assert_eq!((line, key.as_str()), (3, "job[0].source"));
    assert!(msg.contains("unknown transport"), "{msg}");

    let (line, key, msg) = config_error(&format!("{job}tagz = [\"x\"]\n"));
    assert_eq!(line, 5);
    assert_eq!(key, "tagz");
    assert!(msg.contains("unknown field"), "{msg}");

    let (line, key, msg) = config_error(&format!(
        "{job}\n[[job]]\nname = \"a\"\nsource = \"store:\"\ndestination = \"oci:x\"\n"
    ));
    assert_eq!((line, key.as_str()), (7, "job[1].name"));
    assert!(msg.contains("twice"), "{msg}");

    let (line, key, _) = config_error("[[registry]]\nhost = \"r.example\"\nmax_concurrent = 0\n");
    assert_eq!((line, key.as_str()), (3, "registry[0].max_concurrent"));

    let (line, key, _) = config_error("[[registry]]\nhost = \"r.example\"\nusername = \"u\"\n");
    assert_eq!((line, key.as_str()), (3, "registry[0].username"));

    let (line, _, msg) = config_error("[[job]\nname = 1\n");
    assert_eq!(line, 1);
    assert!(!msg.is_empty());

    let (line, key, _) = config_error(&format!("{job}platforms = [\"linux\"]\n"));
    assert_eq!((line, key.as_str()), (5, "job[0].platforms"));

    let (line, key, _) = config_error(&format!("{job}\n[inbox]\npath = \"in\"\njob = \"nope\"\n"));
    assert_eq!((line, key.as_str()), (8, "inbox.job"));

    // The shipped example loads as is.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let c = Config::load(&root.join("config.example.toml")).unwrap();
    assert_eq!(c.jobs.len(), 2);
    assert_eq!(
        c.jobs[0].source,
        sealift_sync::config::Place::LayoutDir {
            path: root.join("examples/sample-layout")
        }
    );
}
