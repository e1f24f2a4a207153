//! `graft copy` and `graft inspect` against real registries, with skopeo as the referee.

use serde_json::Value;

use crate::graft::graft;
use crate::support::proxy::Proxy;
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::{science_oci_ref, skopeo, skopeo_inspect_raw, try_skopeo};

fn children(index: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(index).unwrap();
    v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect()
}

fn args(parts: &[&str], extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec!["-q".into()];
    v.extend(parts.iter().map(|s| s.to_string()));
    v.extend(extra.iter().cloned());
    v
}

#[test]
fn skopeo_index_copies_to_repo_layout_and_second_registry_with_identical_digests() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    let b = Registry::start(RegistryOpts::htpasswd("alice", "wonderland").with_tls());
    a.seed("jupyter-sci", "science/jupyter:2.4");
    let original = a.raw("science/jupyter:2.4");
    let kids = children(&original);
    assert_eq!(kids.len(), 2);

    // registry → another repository of the same registry
    let out = graft(
        home.path(),
        &args(
            &[
                "copy",
                &format!("docker://{}", a.image_ref("science/jupyter:2.4")),
                &format!("docker://{}", a.image_ref("mirror/jupyter:2.4")),
            ],
            &a.graft_args(),
        ),
    )
    .ok();
    assert_eq!(
        out.stdout.trim(),
        format!("sha256:{}", crate::support::tools::sha256_hex(&original))
    );
    assert_eq!(a.raw("mirror/jupyter:2.4"), original);

    // registry → oci: layout, read back by skopeo
    let layout = home.path().join("layout");
    let oci = format!("oci:{}:2.4", layout.display());
    graft(
        home.path(),
        &args(
            &[
                "copy",
                &format!("docker://{}", a.image_ref("science/jupyter:2.4")),
                &oci,
            ],
            &a.graft_args(),
        ),
    )
    .ok();
    assert_eq!(skopeo_inspect_raw(&oci, &[] as &[&str]), original);

    // oci: layout → a second registry with TLS and basic auth
    graft(
        home.path(),
        &args(
            &[
                "copy",
                &oci,
                &format!("docker://{}", b.image_ref("copy/jupyter:2.4")),
            ],
            &b.graft_args(),
        ),
    )
    .ok();
    assert_eq!(b.raw("copy/jupyter:2.4"), original);
    for kid in &kids {
        assert_eq!(
            b.raw(&format!("copy/jupyter@{kid}")),
            a.raw(&format!("science/jupyter@{kid}"))
        );
    }
    // skopeo can pull the copied image back out of the second registry.
    let back = home.path().join("back");
    let mut pull = vec!["copy".to_string(), "--all".into()];
    pull.extend(b.skopeo_args(false));
    pull.push(b.docker_ref("copy/jupyter:2.4"));
    pull.push(format!("oci:{}:x", back.display()));
    skopeo(&pull);
}

#[test]
fn copy_within_registry_mounts_and_second_copy_uploads_nothing() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("astro-base", "science/astro:1.0");
    let proxy = Proxy::start(&reg.base_url());
    let src = format!("docker://{}", proxy.image_ref("science/astro:1.0"));
    let dst = format!("docker://{}", proxy.image_ref("rel/astro:1.0"));
    let run = graft(
        home.path(),
        &["-q", "-o", "json", "--tls-verify=false", "copy", &src, &dst],
    )
    .ok();
    let report = &run.json()["report"];
    let blobs = report["mounted"]["count"].as_u64().unwrap();
    assert!(blobs >= 4, "{report}");
    assert_eq!(report["uploaded"]["count"], 0, "{report}");
    assert_eq!(
        proxy.count("GET", "/blobs/sha256:"),
        0,
        "no blob bytes read: {:?}",
        proxy.requests()
    );
    assert_eq!(proxy.count("POST", "mount=") as u64, blobs);
    assert_eq!(
        proxy.count("PATCH", "/blobs/uploads/") + proxy.count("PUT", "/blobs/uploads/"),
        0
    );
    assert_eq!(reg.raw("rel/astro:1.0"), reg.raw("science/astro:1.0"));

    proxy.clear();
    let run = graft(
        home.path(),
        &["-q", "-o", "json", "--tls-verify=false", "copy", &src, &dst],
    )
    .ok();
    let report = &run.json()["report"];
    assert_eq!(report["uploaded"]["count"], 0);
    assert_eq!(report["mounted"]["count"], 0);
    assert_eq!(report["manifests_written"], 0, "{report}");
    for m in ["PUT", "POST", "PATCH", "DELETE"] {
        assert_eq!(
            proxy.count(m, "/v2/"),
            0,
            "{m} on a second identical copy: {:?}",
            proxy.requests()
        );
    }
}

#[test]
fn token_auth_mount_asks_pull_on_source_and_uploads_nothing() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::token("bob", "builder"));
    reg.seed("astro-base", "science/astro:1.0");
    reg.clear_token_requests();
    let mut a = vec!["-q".to_string(), "-o".into(), "json".into(), "copy".into()];
    a.push(format!("docker://{}", reg.image_ref("science/astro:1.0")));
    a.push(format!("docker://{}", reg.image_ref("team/astro:1.0")));
    a.extend(reg.graft_args());
    let run = graft(home.path(), &a).ok();
    let report = &run.json()["report"];
    assert_eq!(report["uploaded"]["count"], 0, "{report}");
    assert!(report["mounted"]["count"].as_u64().unwrap() > 0, "{report}");
    let reqs = reg.token_requests();
    assert!(
        reqs.iter().any(|r| r.asked_for_action("team/astro", "push")
            && r.asked_for_action("science/astro", "pull")),
        "a mount token must carry pull on the source: {reqs:?}"
    );
    assert_eq!(reg.raw("team/astro:1.0"), reg.raw("science/astro:1.0"));
}

#[test]
fn platform_copies_one_manifest_with_normalised_matching() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let src = science_oci_ref("astro-base");
    let dst = format!("docker://{}", reg.image_ref("one/astro:arm"));
    // The sample's arm64 entry says variant v8; linux/aarch64 must match it.
    graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "copy",
            "--platform",
            "linux/aarch64",
            &src,
            &dst,
        ],
    )
    .ok();
    let m: Value = serde_json::from_slice(&reg.raw("one/astro:arm")).unwrap();
    assert!(m["layers"].is_array(), "a single manifest: {m}");
    let cfg = graft(
        home.path(),
        &["--tls-verify=false", "inspect", "--config", &dst],
    )
    .ok()
    .json();
    assert_eq!(cfg["architecture"], "arm64");
    let err = graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "copy",
            "--platform",
            "linux/s390x",
            &src,
            &dst,
        ],
    )
    .fails(1);
    assert!(
        err.stderr.contains("linux/s390x") && err.stderr.contains("linux/amd64"),
        "{}",
        err.stderr
    );
}

#[test]
fn inspect_raw_is_exact_and_json_describes() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("jupyter-sci", "sci/jup:2.4");
    let r = format!("docker://{}", reg.image_ref("sci/jup:2.4"));
    let out = crate::graft::command(home.path())
        .args(["--tls-verify=false", "inspect", "--raw", &r])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, reg.raw("sci/jup:2.4"));
    let j = graft(
        home.path(),
        &["--tls-verify=false", "-o", "json", "inspect", &r],
    )
    .ok()
    .json();
    assert_eq!(j["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(j["manifest"]["manifests"].as_array().unwrap().len(), 2);
    let text = graft(home.path(), &["--tls-verify=false", "inspect", &r]).ok();
    assert!(text.stdout.contains("linux/arm64/v8"), "{}", text.stdout);
    let tags = graft(home.path(), &["--tls-verify=false", "ls", &r]).ok();
    assert_eq!(tags.stdout.trim(), "2.4");
}

#[test]
fn archive_round_trip_keeps_digests() {
    let home = tempfile::tempdir().unwrap();
    let a = Registry::start(RegistryOpts::plain());
    let b = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "s/astro:1.0");
    let archive = format!(
        "oci-archive:{}:1.0",
        home.path().join("astro.tar").display()
    );
    graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "copy",
            &format!("docker://{}", a.image_ref("s/astro:1.0")),
            &archive,
        ],
    )
    .ok();
    assert_eq!(
        skopeo_inspect_raw(&archive, &[] as &[&str]),
        a.raw("s/astro:1.0")
    );
    graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "copy",
            &archive,
            &format!("docker://{}", b.image_ref("s/astro:1.0")),
        ],
    )
    .ok();
    assert_eq!(b.raw("s/astro:1.0"), a.raw("s/astro:1.0"));
}

#[test]
fn corrupted_source_blob_fails_clearly_and_tags_nothing() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let layout = home.path().join("bad");
    let mut cp = vec!["copy".to_string(), "--all".into()];
    cp.push(science_oci_ref("astro-base"));
    cp.push(format!("oci:{}:1.0", layout.display()));
    skopeo(&cp);
    // Corrupt the largest blob (a layer) in place, keeping its size.
    let blobs = layout.join("blobs/sha256");
    let mut files: Vec<_> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let victim = files.last().unwrap().clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let dst = format!("docker://{}", reg.image_ref("bad/astro:1.0"));
    let run = graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "copy",
            &format!("oci:{}:1.0", layout.display()),
            &dst,
        ],
    )
    .fails(1);
    assert!(run.stderr.contains("digest mismatch"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains(victim.file_name().unwrap().to_str().unwrap()),
        "names the blob: {}",
        run.stderr
    );
    let probe = try_skopeo([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref("bad/astro:1.0"),
    ]);
    assert!(
        !probe.status.success(),
        "no tag may point at an incomplete image"
    );
}

#[test]
fn wrong_password_and_missing_tag_fail_clearly_without_leaking() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::htpasswd("alice", "right-password").with_tls());
    reg.seed("astro-base", "s/astro:1.0");
    let certs = reg.cert_dir().display().to_string();
    let src = format!("docker://{}", reg.image_ref("s/astro:1.0"));
    let run = graft(
        home.path(),
        &[
            "-v",
            "--cert-dir",
            &certs,
            "--creds",
            "alice:wrong-password",
            "inspect",
            &src,
        ],
    )
    .fails(1);
    assert!(
        run.stderr.contains("authentication") && run.stderr.contains("alice"),
        "{}",
        run.stderr
    );
    assert!(
        !run.all().contains("wrong-password"),
        "password leaked: {}",
        run.all()
    );
    let missing = format!("docker://{}", reg.image_ref("s/astro:nope"));
    let run = graft(
        home.path(),
        &[
            "--cert-dir",
            &certs,
            "--creds",
            "alice:right-password",
            "inspect",
            &missing,
        ],
    )
    .fails(1);
    assert!(
        run.stderr.contains("not found") && run.stderr.contains("s/astro:nope"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("MANIFEST_UNKNOWN"),
        "shows the registry's code: {}",
        run.stderr
    );
    // TLS is verified by default: without the CA the copy is refused with a hint.
    let run = graft(
        home.path(),
        &["--creds", "alice:right-password", "inspect", &src],
    )
    .fails(1);
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    // A bad reference is a usage error.
    let run = graft(home.path(), &["inspect", "alpine"]).fails(2);
    assert!(run.stderr.contains("missing transport"), "{}", run.stderr);
}

#[test]
fn no_secret_in_verbose_output_with_token_auth() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::token("carol", "pa55-w0rd-secret"));
    reg.seed("astro-base", "s/astro:1.0");
    let mut a = vec!["-vv".to_string(), "copy".into()];
    a.push(format!("docker://{}", reg.image_ref("s/astro:1.0")));
    a.push(format!("docker://{}", reg.image_ref("t/astro:1.0")));
    a.extend(reg.graft_args());
    let run = graft(home.path(), &a).ok();
    let all = run.all();
    assert!(all.contains("/v2/"), "-vv logs requests: {all}");
    assert!(!all.contains("pa55-w0rd-secret"), "password leaked");
    assert!(!all.contains("eyJ"), "a JWT leaked: {all}");
    assert!(
        !all.to_ascii_lowercase().contains("authorization:"),
        "a header leaked: {all}"
    );
    // Credentials from a Docker config.json work too.
    let cfg = home.path().join("dockercfg");
    reg.write_docker_config(&cfg);
    let run = crate::graft::capture(
        crate::graft::command(home.path())
            .env("DOCKER_CONFIG", &cfg)
            .args([
                "-q",
                "--tls-verify=false",
                "inspect",
                &format!("docker://{}", reg.image_ref("t/astro:1.0")),
            ]),
    )
    .ok();
    assert!(run.stdout.contains("Digest:"));
}

#[test]
fn credential_helper_supplies_credentials() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::htpasswd("dave", "helper-secret"));
    reg.seed("astro-base", "s/astro:1.0");
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-graft-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread url\n[ \"$1\" = get ] || exit 1\n[ \"$url\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"ServerURL\":\"'$url'\",\"Username\":\"dave\",\"Secret\":\"helper-secret\"}}'\n",
            reg.addr()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = home.path().join("docker");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"graft-test"}}}}"#, reg.addr()),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = crate::graft::capture(
        crate::graft::command(home.path())
            .env("DOCKER_CONFIG", &cfg)
            .env("PATH", path)
            .args([
                "-q",
                "--tls-verify=false",
                "inspect",
                &format!("docker://{}", reg.image_ref("s/astro:1.0")),
            ]),
    )
    .ok();
    assert!(run.stdout.contains("Digest:"), "{}", run.all());
    assert!(!run.all().contains("helper-secret"));
}

#[test]
fn server_errors_and_429_are_retried() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    reg.seed("astro-base", "s/astro:1.0");
    let proxy = Proxy::start(&reg.base_url());
    proxy.fail_with("PUT", "/manifests/", 500, 2);
    proxy.retry_after_429("HEAD", "/blobs/", 1, 1);
    let run = graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "copy",
            &format!("docker://{}", proxy.image_ref("s/astro:1.0")),
            &format!("docker://{}", proxy.image_ref("r/astro:1.0")),
        ],
    )
    .ok();
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert_eq!(proxy.pending_faults(), 0, "every injected fault was hit");
    assert_eq!(reg.raw("r/astro:1.0"), reg.raw("s/astro:1.0"));
    // A registry that keeps failing: the error shows the registry's code and message.
    proxy.fail_with("GET", "/manifests/", 503, 100);
    let run = graft(
        home.path(),
        &[
            "--tls-verify=false",
            "--retries",
            "1",
            "inspect",
            &format!("docker://{}", proxy.image_ref("s/astro:1.0")),
        ],
    )
    .fails(1);
    assert!(
        run.stderr.contains("503") && run.stderr.contains("injected failure"),
        "{}",
        run.stderr
    );
}

#[test]
fn dropped_connection_mid_upload_is_retried() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let proxy = Proxy::start(&reg.base_url());
    proxy.drop_after("PUT", "/blobs/uploads/", 200, 1);
    let run = graft(
        home.path(),
        &[
            "-q",
            "-o",
            "json",
            "--tls-verify=false",
            "copy",
            &science_oci_ref("astro-base"),
            &format!("docker://{}", proxy.image_ref("d/astro:1.0")),
        ],
    )
    .ok();
    assert_eq!(proxy.pending_faults(), 0, "the drop happened");
    assert_eq!(
        run.json()["report"]["uploaded"]["count"].as_u64().unwrap(),
        6,
        "2 configs + 4 layers, each uploaded once in the end"
    );
    let want = skopeo_inspect_raw(&science_oci_ref("astro-base"), &[] as &[&str]);
    assert_eq!(reg.raw("d/astro:1.0"), want);
}

#[test]
fn interrupted_copy_tags_nothing_and_rerun_uploads_only_the_rest() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let proxy = Proxy::start(&reg.base_url());
    let dst = format!("docker://{}", proxy.image_ref("i/jup:2.4"));
    proxy.fail_with("PUT", "/manifests/", 500, 1000);
    graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "--retries",
            "0",
            "copy",
            &science_oci_ref("jupyter-sci"),
            &dst,
        ],
    )
    .fails(1);
    proxy.clear_faults();
    assert!(!try_skopeo([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &reg.docker_ref("i/jup:2.4")
    ])
    .status
    .success());
    proxy.clear();
    let run = graft(
        home.path(),
        &[
            "-q",
            "-o",
            "json",
            "--tls-verify=false",
            "copy",
            &science_oci_ref("jupyter-sci"),
            &dst,
        ],
    )
    .ok();
    let report = &run.json()["report"];
    assert_eq!(
        report["uploaded"]["count"], 0,
        "blobs were already there: {report}"
    );
    assert!(report["present"]["count"].as_u64().unwrap() > 0);
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 0);
    assert_eq!(
        reg.raw("i/jup:2.4"),
        skopeo_inspect_raw(&science_oci_ref("jupyter-sci"), &[] as &[&str])
    );
}

#[test]
fn chunked_upload_follows_location_and_keeps_digests() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::plain());
    let proxy = Proxy::start(&reg.base_url());
    graft(
        home.path(),
        &[
            "-q",
            "--tls-verify=false",
            "--chunk-size",
            "256",
            "copy",
            &science_oci_ref("jupyter-sci"),
            &format!("docker://{}", proxy.image_ref("c/jup:2.4")),
        ],
    )
    .ok();
    assert!(
        proxy.count("PATCH", "/blobs/uploads/") > 4,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(
        reg.raw("c/jup:2.4"),
        skopeo_inspect_raw(&science_oci_ref("jupyter-sci"), &[] as &[&str])
    );
}

#[test]
fn mount_refused_by_token_acl_falls_back_to_upload() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::start(RegistryOpts::token("erin", "acl-pass"));
    reg.seed("astro-base", "science/astro:1.0");
    reg.token_server().unwrap().deny_in_mounts("science/astro");
    let mut a = vec!["-q".to_string(), "-o".into(), "json".into(), "copy".into()];
    a.push(format!("docker://{}", reg.image_ref("science/astro:1.0")));
    a.push(format!("docker://{}", reg.image_ref("other/astro:1.0")));
    a.extend(reg.graft_args());
    let report = graft(home.path(), &a).ok().json()["report"].clone();
    assert_eq!(report["mounted"]["count"], 0, "{report}");
    assert_eq!(
        report["uploaded"]["count"], 6,
        "every blob uploaded after the refused mounts: {report}"
    );
    assert_eq!(reg.raw("other/astro:1.0"), reg.raw("science/astro:1.0"));
}
