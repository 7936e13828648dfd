//! The policy against signatures made by real tools: keys from `openssl genpkey`, cosign
//! simple-signing payloads signed with `openssl dgst`/`openssl pkeyutl`, and Sigstore
//! bundles made by `@sigstore/sign` (keyless through `@sigstore/mock`'s Fulcio and Rekor,
//! in-process, offline). Every refusal names its reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use sealift_oci::{Descriptor, Digest};
use sealift_trust::found::{ANNOTATION_SIGNATURE, SIMPLE_SIGNING};
use sealift_trust::{
    Form, Found, Policy, PolicyError, PolicySpec, Refusal, SignatureKind, SignatureLayer, Signer,
    TrustError,
};

/// A real tool; a missing one fails the test with how to install it.
fn run(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool} is not installed ({e}): run scripts/setup.sh"));
    assert!(
        out.status.success(),
        "{tool} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `node trust/tests/js/sign.js …`, after scripts/setup.sh installed its packages.
fn sign_js(args: &[&str]) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/@sigstore/sign").is_dir(),
        "@sigstore/sign is not installed in {}: run scripts/setup.sh",
        dir.display()
    );
    let script = dir.join("sign.js");
    let mut all = vec![script.to_str().unwrap()];
    all.extend_from_slice(args);
    run("node", &all)
}

struct Fx {
    dir: tempfile::TempDir,
    manifest: Vec<u8>,
    image: Digest,
}

impl Fx {
    fn new() -> Fx {
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
        let image = Digest::sha256(&manifest);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("manifest.json"), &manifest).unwrap();
        Fx {
            dir,
            manifest,
            image,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    /// A private key `NAME.pem` and its public key `NAME.pub` (kind: p256, rsa, ed25519).
    fn key(&self, name: &str, kind: &str) -> PathBuf {
        let key = self.s(&format!("{name}.pem"));
        let mut args = vec!["genpkey", "-out", &key];
        match kind {
            "p256" => args.extend(["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            "rsa" => args.extend(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
            _ => args.extend(["-algorithm", "ED25519"]),
        }
        run("openssl", &args);
        let public = self.s(&format!("{name}.pub"));
        run(
            "openssl",
            &["pkey", "-in", &key, "-pubout", "-out", &public],
        );
        PathBuf::from(public)
    }

    /// cosign's simple-signing payload naming `digest`.
    fn payload(&self, digest: &str) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
        .into_bytes()
    }

    /// Sign `payload` with key `NAME.pem` as cosign does (ECDSA/RSA over SHA-256, Ed25519
    /// over the message), with openssl; the base64 signature.
    fn openssl_sign(&self, name: &str, payload: &[u8]) -> String {
        let input = self.path("payload.in");
        std::fs::write(&input, payload).unwrap();
        let key = self.s(&format!("{name}.pem"));
        let input = input.to_str().unwrap();
        let sig = if std::fs::read_to_string(&key).unwrap().len() < 200 {
            // Ed25519 PKCS#8 PEMs are ~120 bytes; pkeyutl signs the raw message.
            run(
                "openssl",
                &["pkeyutl", "-sign", "-rawin", "-inkey", &key, "-in", input],
            )
        } else {
            run("openssl", &["dgst", "-sha256", "-sign", &key, input])
        };
        base64(&sig)
    }

    fn simple(&self, payload: Vec<u8>, signature: &str) -> Found {
        let mut desc = Descriptor::new(
            SIMPLE_SIGNING,
            Digest::sha256(&payload),
            payload.len() as u64,
        );
        desc.annotations
            .insert(ANNOTATION_SIGNATURE.into(), signature.into());
        Found {
            at: format!("{}-{}.sig", "sha256", self.image.hex()),
            layer: SignatureLayer {
                descriptor: desc,
                form: Form::SimpleSigning {
                    signature: Some(signature.into()),
                    certificate: false,
                },
            },
            bytes: payload,
        }
    }

    fn bundle(&self, file: &str) -> Found {
        let bytes = std::fs::read(self.path(file)).unwrap();
        Found {
            at: format!("referrer {}", Digest::sha256(&bytes)),
            layer: SignatureLayer {
                descriptor: Descriptor::new(
                    "application/vnd.dev.sigstore.bundle.v0.3+json",
                    Digest::sha256(&bytes),
                    bytes.len() as u64,
                ),
                form: Form::Bundle,
            },
            bytes,
        }
    }

    fn keys(&self, keys: &[&Path]) -> Policy {
        Policy::from_spec(&PolicySpec {
            keys: keys.iter().map(|k| k.to_path_buf()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    fn keyless(&self, identity: &str, issuer: &str, root: &str) -> Policy {
        Policy::from_spec(&PolicySpec {
            identity: Some(identity.into()),
            issuer: Some(issuer.into()),
            trusted_root: Some(self.path(root)),
            ..Default::default()
        })
        .unwrap()
    }

    fn check(
        &self,
        policy: &Policy,
        found: &[Found],
    ) -> Result<sealift_trust::Verdict, TrustError> {
        policy.check(&self.image, &self.manifest, found)
    }
}

fn base64(bytes: &[u8]) -> String {
    // A file of its own: the tests of this binary run in parallel threads of one process,
    // so a name made from the process id alone was shared (one test encoded another's
    // signature, or found the file removed).
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let out = run(
        "openssl",
        &["base64", "-A", "-in", file.path().to_str().unwrap()],
    );
    String::from_utf8(out).unwrap().trim().to_string()
}

fn only_refusal(e: TrustError) -> Refusal {
    let all: Vec<Refusal> = e.refusals().cloned().collect();
    assert_eq!(all.len(), 1, "one signature, one reason: {e}");
    all.into_iter().next().unwrap()
}

/// sha256 of the key's DER SPKI, computed by openssl (what the verdict must name).
fn openssl_fingerprint(public: &Path) -> String {
    let der = run(
        "openssl",
        &[
            "pkey",
            "-pubin",
            "-in",
            public.to_str().unwrap(),
            "-outform",
            "DER",
        ],
    );
    Digest::sha256(&der).to_string()
}

#[test]
fn cosign_signatures_by_p256_rsa_and_ed25519_keys_admit_the_image() {
    let fx = Fx::new();
    for kind in ["p256", "rsa", "ed25519"] {
        let public = fx.key(kind, kind);
        let payload = fx.payload(&fx.image.to_string());
        let sig = fx.openssl_sign(kind, &payload);
        let other = fx.key(&format!("{kind}-other"), "p256");
        // Any one key suffices: the signer's key listed second.
        let policy = fx.keys(&[&other, &public]);
        let v = fx
            .check(&policy, &[fx.simple(payload, &sig)])
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(v.kind, SignatureKind::CosignKey);
        assert_eq!(v.image, fx.image.to_string());
        match &v.signer {
            Signer::Key {
                fingerprint,
                algorithm,
                file,
            } => {
                assert_eq!(fingerprint, &openssl_fingerprint(&public), "{kind}");
                let want = match kind {
                    "p256" => "ecdsa-p256",
                    k => k,
                };
                assert_eq!(algorithm, want);
                assert_eq!(file, public.to_str().unwrap());
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let fx = Fx::new();
    fx.key("signer", "p256");
    let trusted = fx.key("trusted", "p256");
    let trusted2 = fx.key("trusted2", "rsa");
    let payload = fx.payload(&fx.image.to_string());
    let sig = fx.openssl_sign("signer", &payload);
    let e = fx
        .check(
            &fx.keys(&[&trusted, &trusted2]),
            &[fx.simple(payload, &sig)],
        )
        .unwrap_err();
    assert_eq!(only_refusal(e.clone()), Refusal::NoKeyVerifies { keys: 2 });
    assert!(e.to_string().contains(&fx.image.to_string()), "{e}");
}

#[test]
fn a_tampered_payload_is_refused() {
    let fx = Fx::new();
    let public = fx.key("k", "p256");
    let payload = fx.payload(&fx.image.to_string());
    let sig = fx.openssl_sign("k", &payload);
    let mut tampered = payload.clone();
    let at = tampered.len() - 10;
    tampered[at] ^= 1;
    let e = fx
        .check(&fx.keys(&[&public]), &[fx.simple(tampered, &sig)])
        .unwrap_err();
    assert_eq!(only_refusal(e), Refusal::NoKeyVerifies { keys: 1 });
}

#[test]
fn a_payload_signed_for_another_image_is_refused() {
    let fx = Fx::new();
    let public = fx.key("k", "ed25519");
    let other = Digest::sha256(b"another image").to_string();
    let payload = fx.payload(&other);
    let sig = fx.openssl_sign("k", &payload);
    let e = fx
        .check(&fx.keys(&[&public]), &[fx.simple(payload, &sig)])
        .unwrap_err();
    assert_eq!(
        only_refusal(e),
        Refusal::PayloadDigestMismatch { signed: other }
    );
}

#[test]
fn no_signature_is_refused_naming_the_image() {
    let fx = Fx::new();
    let public = fx.key("k", "p256");
    let e = fx.check(&fx.keys(&[&public]), &[]).unwrap_err();
    assert_eq!(
        e,
        TrustError::NoSignature {
            image: fx.image.clone()
        }
    );
    assert!(e.to_string().contains("has no signature"), "{e}");
}

#[test]
fn key_bundles_from_sigstore_sign_admit_the_image() {
    let fx = Fx::new();
    for (kind, form) in [
        ("p256", ""),
        ("ed25519", ""),
        ("p256", "dsse"),
        ("rsa", "dsse"),
    ] {
        let name = format!("{kind}{form}");
        let public = fx.key(&name, kind);
        let out = format!("{name}.bundle.json");
        let root = format!("{name}.root.json");
        let mut args = vec![
            "key".to_string(),
            fx.s(&format!("{name}.pem")),
            fx.s("manifest.json"),
            fx.s(&out),
            fx.s(&root),
        ];
        if !form.is_empty() {
            args.push(form.into());
        }
        sign_js(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let v = fx
            .check(&fx.keys(&[&public]), &[fx.bundle(&out)])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.kind, SignatureKind::BundleKey, "{name}");
        let Signer::Key { fingerprint, .. } = &v.signer else {
            panic!("{:?}", v.signer)
        };
        assert_eq!(fingerprint, &openssl_fingerprint(&public));
        // With the trusted root naming the (mock) Rekor, its log entry is checked too, and
        // the verdict carries its integrated time.
        let with_root = Policy::from_spec(&PolicySpec {
            keys: vec![public.clone()],
            trusted_root: Some(fx.path(&root)),
            ..Default::default()
        })
        .unwrap();
        let v = fx.check(&with_root, &[fx.bundle(&out)]).unwrap();
        assert!(v.signed_at.is_some(), "{name}: {v:?}");
        // A root naming another log: the entry is not in a log it trusts.
        sign_js(&[
            "key",
            &fx.s(&format!("{name}.pem")),
            &fx.s("manifest.json"),
            &fx.s("x.json"),
            &fx.s("x.root.json"),
        ]);
        let other_log = Policy::from_spec(&PolicySpec {
            keys: vec![public.clone()],
            trusted_root: Some(fx.path("x.root.json")),
            ..Default::default()
        })
        .unwrap();
        let r = only_refusal(fx.check(&other_log, &[fx.bundle(&out)]).unwrap_err());
        assert!(matches!(r, Refusal::Inclusion(_)), "{name}: {r:?}");
        // The same bundle with another key in the policy: refused.
        let wrong = fx.key(&format!("{name}-wrong"), kind);
        let e = fx
            .check(&fx.keys(&[&wrong]), &[fx.bundle(&out)])
            .unwrap_err();
        assert_eq!(
            only_refusal(e),
            Refusal::NoKeyVerifies { keys: 1 },
            "{name}"
        );
    }
}

#[test]
fn a_key_bundle_for_other_bytes_is_refused() {
    let fx = Fx::new();
    let public = fx.key("k", "p256");
    std::fs::write(fx.path("other.json"), b"{\"schemaVersion\":2}").unwrap();
    sign_js(&[
        "key",
        &fx.s("k.pem"),
        &fx.s("other.json"),
        &fx.s("b.json"),
        &fx.s("r.json"),
    ]);
    let e = fx
        .check(&fx.keys(&[&public]), &[fx.bundle("b.json")])
        .unwrap_err();
    assert!(
        matches!(only_refusal(e), Refusal::PayloadDigestMismatch { .. }),
        "a bundle over other bytes names another digest"
    );
}

const ID: &str = "alice@example.com";
const ISSUER: &str = "https://issuer.example";

fn keyless(fx: &Fx, name: &str, expired: bool) {
    let mut args = vec![
        "keyless".to_string(),
        fx.s("manifest.json"),
        fx.s(&format!("{name}.json")),
        fx.s(&format!("{name}.root.json")),
        ID.into(),
        ISSUER.into(),
    ];
    if expired {
        args.push("expired".into());
    }
    sign_js(&args.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn a_keyless_bundle_from_mock_fulcio_and_rekor_admits_the_image_offline() {
    let fx = Fx::new();
    keyless(&fx, "kl", false);
    let policy = fx.keyless(ID, ISSUER, "kl.root.json");
    let v = fx.check(&policy, &[fx.bundle("kl.json")]).unwrap();
    assert_eq!(v.kind, SignatureKind::BundleKeyless);
    assert_eq!(
        v.signer,
        Signer::Identity {
            identity: ID.into(),
            issuer: ISSUER.into()
        }
    );
    // Rekor's integrated time: the bundle was logged just now.
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path("kl.json")).unwrap()).unwrap();
    let logged: i64 = bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(v.signed_at, Some(logged));
    // A key-only policy does not cover a keyless bundle.
    let k = fx.key("k", "p256");
    let e = fx
        .check(&fx.keys(&[&k]), &[fx.bundle("kl.json")])
        .unwrap_err();
    assert!(matches!(only_refusal(e), Refusal::NotCovered(_)));
}

#[test]
fn keyless_bundles_by_other_identities_or_issuers_are_refused() {
    let fx = Fx::new();
    keyless(&fx, "kl", false);
    for (id, issuer) in [
        ("mallory@example.com", ISSUER),
        (ID, "https://other.example"),
    ] {
        let e = fx
            .check(
                &fx.keyless(id, issuer, "kl.root.json"),
                &[fx.bundle("kl.json")],
            )
            .unwrap_err();
        let r = only_refusal(e);
        assert!(
            matches!(&r, Refusal::IdentityMismatch { expected, .. } if expected.contains(id) && expected.contains(issuer)),
            "{r:?}"
        );
    }
}

#[test]
fn a_certificate_expired_when_logged_is_refused() {
    let fx = Fx::new();
    keyless(&fx, "old", true);
    let e = fx
        .check(
            &fx.keyless(ID, ISSUER, "old.root.json"),
            &[fx.bundle("old.json")],
        )
        .unwrap_err();
    let r = only_refusal(e);
    assert!(matches!(r, Refusal::CertificateExpired(_)), "{r:?}");
}

#[test]
fn a_certificate_from_another_fulcio_is_refused() {
    let fx = Fx::new();
    keyless(&fx, "a", false);
    keyless(&fx, "b", false);
    // b's root names another CA (and other logs): a's bundle does not chain to it.
    let e = fx
        .check(
            &fx.keyless(ID, ISSUER, "b.root.json"),
            &[fx.bundle("a.json")],
        )
        .unwrap_err();
    let r = only_refusal(e);
    assert!(
        matches!(r, Refusal::UntrustedChain(_) | Refusal::Inclusion(_)),
        "{r:?}"
    );
    // Only the CA swapped for b's: the chain is what fails.
    let mut root: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path("a.root.json")).unwrap()).unwrap();
    let b: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path("b.root.json")).unwrap()).unwrap();
    root["certificateAuthorities"] = b["certificateAuthorities"].clone();
    std::fs::write(fx.path("mixed.root.json"), root.to_string()).unwrap();
    let e = fx
        .check(
            &fx.keyless(ID, ISSUER, "mixed.root.json"),
            &[fx.bundle("a.json")],
        )
        .unwrap_err();
    let r = only_refusal(e);
    assert!(matches!(r, Refusal::UntrustedChain(_)), "{r:?}");
}

#[test]
fn a_missing_or_broken_inclusion_proof_is_refused() {
    let fx = Fx::new();
    keyless(&fx, "kl", false);
    let policy = fx.keyless(ID, ISSUER, "kl.root.json");
    let bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fx.path("kl.json")).unwrap()).unwrap();

    let mut none = bundle.clone();
    none["verificationMaterial"]["tlogEntries"] = serde_json::json!([]);
    std::fs::write(fx.path("none.json"), none.to_string()).unwrap();
    let r = only_refusal(fx.check(&policy, &[fx.bundle("none.json")]).unwrap_err());
    assert!(
        matches!(r, Refusal::Inclusion(_) | Refusal::Malformed(_)),
        "{r:?}"
    );

    let mut broken = bundle.clone();
    let proof = &mut broken["verificationMaterial"]["tlogEntries"][0]["inclusionProof"];
    proof["rootHash"] = serde_json::json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    std::fs::write(fx.path("broken.json"), broken.to_string()).unwrap();
    let r = only_refusal(fx.check(&policy, &[fx.bundle("broken.json")]).unwrap_err());
    assert!(matches!(r, Refusal::Inclusion(_)), "{r:?}");
}

#[test]
fn bad_policies_are_refused_naming_the_file_or_flag() {
    let fx = Fx::new();
    std::fs::write(fx.path("junk.pem"), "not a key").unwrap();
    let e = Policy::from_spec(&PolicySpec {
        keys: vec![fx.path("junk.pem")],
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(e, PolicyError::BadKey { .. }) && e.to_string().contains("junk.pem"),
        "{e}"
    );
    // A private key is not a public key.
    fx.key("k", "p256");
    let e = Policy::from_spec(&PolicySpec {
        keys: vec![fx.path("k.pem")],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, PolicyError::BadKey { .. }), "{e}");
    let e = Policy::from_spec(&PolicySpec {
        identity: Some(ID.into()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("--verify-issuer") && e.to_string().contains("--trusted-root"),
        "{e}"
    );
    std::fs::write(fx.path("big.pem"), vec![b'a'; 70 * 1024]).unwrap();
    let e = Policy::from_spec(&PolicySpec {
        keys: vec![fx.path("big.pem")],
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, PolicyError::TooLarge { .. }), "{e}");
    assert!(matches!(
        Policy::from_spec(&PolicySpec::default()).unwrap_err(),
        PolicyError::Empty
    ));
}
