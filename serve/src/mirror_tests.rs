//! Unit tests of the mirror configurations (`mirror.rs`). containerd's and podman's files
//! are also checked by the real clients in tests/e2e/mirror.rs; k3s has no Debian package,
//! so its registries.yaml is checked here against the shape k3s documents (mirrors with
//! endpoint lists and regex rewrites, configs with auth and tls), the rewrite applied with
//! a real regex engine.

use std::collections::BTreeSet;

use super::*;

fn opts(format: MirrorFormat, tls: MirrorTls) -> MirrorOptions {
    MirrorOptions {
        server: "mirror.site:5443".into(),
        format,
        tls,
        auth: None,
        hosts: ["docker.io", "quay.io", "localhost:5000"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
    }
}

fn text(f: &MirrorFile) -> &str {
    std::str::from_utf8(&f.bytes).unwrap()
}

#[test]
fn containerd_hosts_toml_points_each_host_at_its_path_on_the_server() {
    let files = render(&opts(MirrorFormat::Containerd, MirrorTls::PlainHttp)).unwrap();
    let paths: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        paths,
        vec![
            PathBuf::from("certs.d/docker.io/hosts.toml"),
            PathBuf::from("certs.d/localhost:5000/hosts.toml"),
            PathBuf::from("certs.d/quay.io/hosts.toml"),
        ]
    );
    let t: toml::Value = toml::from_str(text(&files[0])).unwrap();
    let host = &t["host"]["http://mirror.site:5443/v2/docker.io"];
    assert_eq!(host["override_path"].as_bool(), Some(true));
    assert_eq!(
        host["capabilities"].as_array().unwrap().len(),
        2,
        "{host:?}"
    );
    assert!(t.get("server").is_none());
}

#[test]
fn a_ca_is_copied_beside_each_config_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let tls = MirrorTls::Https {
        ca: Some(ca.clone()),
    };
    let files = render(&opts(MirrorFormat::Containerd, tls.clone())).unwrap();
    let t: toml::Value = toml::from_str(text(&files[1])).unwrap();
    assert_eq!(
        t["host"]["https://mirror.site:5443/v2/docker.io"]["ca"].as_str(),
        Some(CA_NAME)
    );
    assert_eq!(
        files[0].path,
        PathBuf::from("certs.d/docker.io").join(CA_NAME)
    );
    assert_eq!(files[0].bytes, std::fs::read(&ca).unwrap());

    let files = render(&opts(MirrorFormat::RegistriesConf, tls)).unwrap();
    assert_eq!(
        files[1].path,
        PathBuf::from("certs.d/mirror.site:5443/ca.crt")
    );
    let t: toml::Value = toml::from_str(text(&files[0])).unwrap();
    let regs = t["registry"].as_array().unwrap();
    assert_eq!(regs.len(), 3);
    assert_eq!(regs[0]["prefix"].as_str(), Some("docker.io"));
    assert_eq!(
        regs[0]["mirror"][0]["location"].as_str(),
        Some("mirror.site:5443/docker.io")
    );
    assert!(regs[0]["mirror"][0].get("insecure").is_none());
}

#[test]
fn registries_conf_marks_plain_http_mirrors_insecure() {
    let files = render(&opts(MirrorFormat::RegistriesConf, MirrorTls::PlainHttp)).unwrap();
    let t: toml::Value = toml::from_str(text(&files[0])).unwrap();
    for r in t["registry"].as_array().unwrap() {
        let m = &r["mirror"][0];
        assert_eq!(m["insecure"].as_bool(), Some(true));
        assert_eq!(
            m["location"].as_str().unwrap(),
            format!("mirror.site:5443/{}", r["location"].as_str().unwrap())
        );
    }
}

#[test]
fn k3s_registries_yaml_has_the_documented_shape_and_rewrites_to_the_store_name() {
    let mut o = opts(MirrorFormat::K3s, MirrorTls::Https { ca: None });
    o.auth = Some(("puller".into(), "p\"ss: #word".into()));
    let files = render(&o).unwrap();
    assert_eq!(files.len(), 1);
    assert!(files[0].secret, "a file holding a password is a secret");
    assert!(
        !format!("{:?}", files[0]).contains("word"),
        "Debug shows no contents"
    );
    let y: yaml_serde::Value = yaml_serde::from_str(text(&files[0])).unwrap();
    let m = &y["mirrors"]["docker.io"];
    assert_eq!(
        m["endpoint"].as_sequence().unwrap()[0].as_str(),
        Some("https://mirror.site:5443")
    );
    let rewrite = m["rewrite"].as_mapping().unwrap();
    assert_eq!(rewrite.len(), 1);
    let (pattern, replacement) = rewrite.iter().next().unwrap();
    let re = regex::Regex::new(pattern.as_str().unwrap()).unwrap();
    assert_eq!(
        re.replace("library/nginx", replacement.as_str().unwrap()),
        "docker.io/library/nginx"
    );
    assert!(y["mirrors"]["localhost:5000"].is_mapping());
    let auth = &y["configs"]["mirror.site:5443"]["auth"];
    assert_eq!(auth["username"].as_str(), Some("puller"));
    assert_eq!(auth["password"].as_str(), Some("p\"ss: #word"));
    assert!(y["configs"]["mirror.site:5443"].get("tls").is_none());

    // Plain HTTP and no auth: no configs at all (an http:// endpoint needs none).
    let files = render(&opts(MirrorFormat::K3s, MirrorTls::PlainHttp)).unwrap();
    assert!(!files[0].secret);
    let y: yaml_serde::Value = yaml_serde::from_str(text(&files[0])).unwrap();
    assert!(y.get("configs").is_none());
    assert_eq!(
        y["mirrors"]["quay.io"]["endpoint"][0].as_str(),
        Some("http://mirror.site:5443")
    );
}

#[test]
fn bad_hosts_and_misplaced_auth_are_refused() {
    let mut o = opts(MirrorFormat::Containerd, MirrorTls::PlainHttp);
    o.server = "mirror\"\n[x]".into();
    assert!(matches!(render(&o), Err(MirrorError::Host { .. })));
    let mut o = opts(MirrorFormat::RegistriesConf, MirrorTls::PlainHttp);
    o.hosts.insert("bad host".into());
    assert!(matches!(render(&o), Err(MirrorError::Host { .. })));
    let mut o = opts(MirrorFormat::Containerd, MirrorTls::PlainHttp);
    o.auth = Some(("u".into(), "p".into()));
    assert!(matches!(render(&o), Err(MirrorError::AuthNotWritten(_))));
    let mut o = opts(MirrorFormat::K3s, MirrorTls::PlainHttp);
    o.hosts = ["mirror.site:5443".to_string()].into_iter().collect();
    assert!(matches!(render(&o), Err(MirrorError::NoHosts)));
}

#[test]
fn write_replaces_files_whole_and_keeps_secrets_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(MirrorFormat::K3s, MirrorTls::PlainHttp);
    o.auth = Some(("u".into(), "secret".into()));
    let files = render(&o).unwrap();
    let written = write(&dir.path().join("out"), &files).unwrap();
    assert_eq!(written, vec![dir.path().join("out/registries.yaml")]);
    let meta = std::fs::metadata(&written[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&written[0]).unwrap(), files[0].bytes);
    let left: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "no .partial left: {left:?}");
}
