//! One process (one open) owns a store; others are told who holds it.

use std::process::Command;

use sealift_store::{Error, Store};

#[test]
fn second_open_in_same_process_is_locked_and_names_pid() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    let pid = std::process::id();
    let err = match Store::open(dir.path()) {
        Ok(_) => panic!("a second open of a locked store succeeded"),
        Err(e) => e,
    };
    match &err {
        Error::Locked {
            path,
            pid: p,
            command,
        } => {
            assert_eq!(path, dir.path());
            assert_eq!(*p, pid);
            assert!(
                !command.is_empty() && command != "unknown command",
                "{command:?}"
            );
        }
        e => panic!("expected Locked, got {e:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&pid.to_string()), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");

    // The first handle still works, and once it is gone the store opens again.
    let lease = first.lease("t", None).unwrap();
    first
        .put_blob(
            &lease,
            &sealift_oci::Digest::sha256(b"x"),
            1,
            "",
            &mut &b"x"[..],
        )
        .unwrap();
    drop(lease);
    drop(first);
    let again = Store::open(dir.path()).unwrap();
    assert!(again
        .record(&sealift_oci::Digest::sha256(b"x"))
        .unwrap()
        .is_some());
}

const CHILD_DIR: &str = "SEALIFT_TEST_LOCK_CHILD_DIR";
const CHILD_HOLDER: &str = "SEALIFT_TEST_LOCK_HOLDER_PID";

/// Run as the parent, this holds a store and re-runs itself in a child process, which
/// must be refused with an error naming the parent's PID. Run as the child (env set), it
/// is that second opener.
#[test]
fn second_process_is_locked_out_and_told_the_holder_pid() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        let holder: u32 = std::env::var(CHILD_HOLDER).unwrap().parse().unwrap();
        assert_ne!(holder, std::process::id());
        match Store::open(&dir) {
            Ok(_) => panic!("child opened a store another process holds"),
            Err(e @ Error::Locked { .. }) => {
                let Error::Locked { pid, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(*pid, holder);
                let msg = e.to_string();
                assert!(msg.contains(&holder.to_string()), "{msg}");
                println!("CHILD-LOCKED: {msg}");
            }
            Err(e) => panic!("expected Locked, got {e:?}"),
        }
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "lock::second_process_is_locked_out_and_told_the_holder_pid",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_HOLDER, std::process::id().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("CHILD-LOCKED:") && stdout.contains(&std::process::id().to_string()),
        "child did not report the lock:\n{stdout}\n{stderr}"
    );
}
