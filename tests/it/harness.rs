//! Self-test of the integration-test support code in `tests/it/support/` against the real
//! registry (distribution 2.8), skopeo and umoci, plus checks of the sample science fixtures
//! in `testdata/science/`: if the harness lies, every other test is worthless.

use crate::support;

use std::path::Path;

use futures::StreamExt;
use serde_json::Value;
use support::proxy::Proxy;
use support::registry::{Registry, RegistryOpts, TOKEN_SERVICE};
use support::tools::{
    science_layout, science_oci_ref, sha256_digest, skopeo, skopeo_inspect_raw, testdata_dir,
    try_skopeo, try_umoci, umoci,
};

const ASTRO_INDEX: &str = "sha256:d214be40b7757cc1dc8f6516985ea7c9f43e0ffe690b93a1e9ddbb1d8831d19c";
const JUPYTER_INDEX: &str =
    "sha256:f2aaf80f9cbdafbb471999c57af2b7e9ecd67bed98db14dfe6dcabc56e1f69ed";

/// Bytes of a blob in a sample layout.
fn layout_blob(name: &str, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::read(science_layout(name).join("blobs/sha256").join(hex)).unwrap()
}

/// The digest that a layout's index.json points at.
fn layout_top_digest(name: &str) -> String {
    let idx: Value =
        serde_json::from_slice(&std::fs::read(science_layout(name).join("index.json")).unwrap())
            .unwrap();
    idx["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// `skopeo copy --all SRC DEST` with extra flags.
fn copy_all(extra: &[String], src: &str, dest: &str) -> std::process::Output {
    let mut args: Vec<String> = vec!["copy".into(), "--all".into()];
    args.extend(extra.iter().cloned());
    args.push(src.into());
    args.push(dest.into());
    try_skopeo(args)
}

// ------------------------------------------------------------------ fixtures

#[test]
fn fixtures_are_reproducible_and_well_formed() {
    let out = tempfile::tempdir().unwrap();
    support::tools::run_ok(
        std::process::Command::new("python3")
            .arg(testdata_dir().join("make-science.py"))
            .arg(out.path()),
    );
    for name in ["astro-base", "jupyter-sci"] {
        let committed = science_layout(name);
        let fresh = out.path().join(name);
        let mut files = vec!["oci-layout".to_string(), "index.json".to_string()];
        for e in std::fs::read_dir(fresh.join("blobs/sha256")).unwrap() {
            files.push(format!(
                "blobs/sha256/{}",
                e.unwrap().file_name().to_string_lossy()
            ));
        }
        let committed_blobs = std::fs::read_dir(committed.join("blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(committed_blobs + 2, files.len(), "{name}: blob count");
        let mut total = 0;
        for f in &files {
            let a = std::fs::read(committed.join(f)).unwrap();
            let b = std::fs::read(fresh.join(f)).unwrap();
            assert!(
                a == b,
                "{name}/{f} differs from a fresh run of make-science.py"
            );
            total += a.len();
        }
        assert!(total < 100 * 1024, "{name} is {total} bytes");
    }
    assert_eq!(layout_top_digest("astro-base"), ASTRO_INDEX);
    assert_eq!(layout_top_digest("jupyter-sci"), JUPYTER_INDEX);

    for (name, digest, layers) in [
        ("astro-base", ASTRO_INDEX, 2),
        ("jupyter-sci", JUPYTER_INDEX, 3),
    ] {
        let index = json(&layout_blob(name, digest));
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let children = index["manifests"].as_array().unwrap();
        assert_eq!(children.len(), 2);
        assert_eq!(children[0]["platform"]["architecture"], "amd64");
        assert_eq!(children[1]["platform"]["architecture"], "arm64");
        assert_eq!(children[1]["platform"]["variant"], "v8");
        let mut layer_lists = vec![];
        for c in children {
            let m = json(&layout_blob(name, c["digest"].as_str().unwrap()));
            let ls: Vec<String> = m["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(ls.len(), layers);
            let cfg = json(&layout_blob(name, m["config"]["digest"].as_str().unwrap()));
            assert!(cfg["config"]["Healthcheck"].is_object());
            assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), layers);
            let non_empty = cfg["history"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|h| h["empty_layer"] != true)
                .count();
            assert_eq!(non_empty, layers);
            layer_lists.push(ls);
        }
        if name == "jupyter-sci" {
            assert_eq!(layer_lists[0][1], layer_lists[1][1], "shared middle layer");
            assert_ne!(layer_lists[0][0], layer_lists[1][0]);
        }
    }
}

#[test]
fn skopeo_reads_the_layouts() {
    for (name, digest) in [("astro-base", ASTRO_INDEX), ("jupyter-sci", JUPYTER_INDEX)] {
        let raw = skopeo_inspect_raw::<&str>(&science_oci_ref(name), &[]);
        assert_eq!(sha256_digest(&raw), digest);
    }
}

#[test]
fn umoci_unpacks_a_single_platform_copy() {
    let tmp = tempfile::tempdir().unwrap();
    // umoci 0.4.7 refuses the two-platform index ("tag is ambiguous"), so
    // make a single-platform copy with skopeo first.
    let full = tmp.path().join("full");
    support::tools::run_ok(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(science_layout("astro-base"))
            .arg(&full),
    );
    let multi = try_umoci([
        "unpack".to_string(),
        "--image".into(),
        format!("{}:1.0", full.display()),
        tmp.path().join("nope").display().to_string(),
    ]);
    eprintln!(
        "umoci on the two-platform index: {} {}",
        multi.status,
        String::from_utf8_lossy(&multi.stderr).trim()
    );

    for (name, arch, variant, file, expect) in [
        (
            "astro-base",
            "arm64",
            Some("v8"),
            "opt/astro/bin/astro",
            "linux/arm64/v8",
        ),
        (
            "jupyter-sci",
            "amd64",
            None,
            "opt/conda/bin/python",
            "linux/amd64",
        ),
    ] {
        let single = tmp.path().join(format!("{name}-{arch}"));
        let tag = if name == "astro-base" { "1.0" } else { "2.4" };
        let mut args = vec!["copy".to_string(), "--override-arch".into(), arch.into()];
        if let Some(v) = variant {
            args.extend(["--override-variant".into(), v.into()]);
        }
        args.push(science_oci_ref(name));
        args.push(format!("oci:{}:{tag}", single.display()));
        skopeo(args);
        let bundle = tmp.path().join(format!("bundle-{name}"));
        umoci([
            "unpack".to_string(),
            "--image".into(),
            format!("{}:{tag}", single.display()),
            bundle.display().to_string(),
        ]);
        let rootfs = bundle.join("rootfs");
        let content = std::fs::read_to_string(rootfs.join(file)).unwrap();
        assert!(content.contains(expect), "{file}: {content}");
        if name == "astro-base" {
            let link = std::fs::read_link(rootfs.join("usr/local/bin/astro")).unwrap();
            assert_eq!(link, Path::new("/opt/astro/bin/astro"));
            assert!(rootfs.join("opt/astro/data/cache").is_dir());
        } else {
            assert!(rootfs
                .join("opt/conda/etc/jupyter/jupyter_server_config.py")
                .is_file());
            assert!(rootfs.join("usr/local/bin/start.sh").is_file());
            assert!(rootfs.join("opt/conda/share/obsolete").is_dir());
        }
    }
}

// ------------------------------------------------------------------ registry

#[tokio::test]
async fn plain_registry_starts_answers_and_dies_on_drop() {
    let reg = Registry::plain();
    assert!(reg.base_url().starts_with("http://127.0.0.1:"));
    let resp = reg
        .http_client()
        .get(format!("{}/v2/", reg.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert!(reg.log().contains("GET /v2/"), "access log: {}", reg.log());

    let pid = reg.pid();
    let dir = reg.dir().to_path_buf();
    drop(reg);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "registry still running"
    );
    assert!(!dir.exists(), "tempdir left behind");
}

#[tokio::test]
async fn htpasswd_tls_registry_accepts_skopeo_with_creds_only() {
    let reg = Registry::start(RegistryOpts::htpasswd("alice", "s3cret").with_tls());
    assert!(reg.base_url().starts_with("https://127.0.0.1:"));
    let certs: Vec<_> = std::fs::read_dir(reg.cert_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(certs, ["ca.crt"]);

    // rustls (reqwest) trusts the self-signed certificate too.
    let url = format!("{}/v2/", reg.base_url());
    let resp = reg.http_client().get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let resp = reg
        .http_client()
        .get(&url)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let dest = reg.docker_ref("science/astro-base:1.0");
    let out = copy_all(
        &reg.skopeo_args(true),
        &science_oci_ref("astro-base"),
        &dest,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = skopeo_inspect_raw(&dest, &reg.skopeo_inspect_args());
    assert_eq!(sha256_digest(&raw), ASTRO_INDEX, "stored byte for byte");

    // Wrong and missing credentials fail.
    let mut wrong = vec!["--dest-creds".to_string(), "alice:wrong".into()];
    wrong.extend(reg.skopeo_tls_args(true));
    let out = copy_all(
        &wrong,
        &science_oci_ref("astro-base"),
        &reg.docker_ref("x/y:1"),
    );
    assert!(!out.status.success());
    let out = copy_all(
        &reg.skopeo_tls_args(true),
        &science_oci_ref("astro-base"),
        &reg.docker_ref("x/y:1"),
    );
    assert!(!out.status.success());
    // Without the cert dir, TLS verification fails.
    let out = copy_all(
        &reg.skopeo_creds_args(true),
        &science_oci_ref("astro-base"),
        &reg.docker_ref("x/y:1"),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn token_registry_push_pull_records_and_mounts() {
    let reg = Registry::start(RegistryOpts::token("bob", "hunter2"));
    let repo = "science/jupyter-sci";
    let dest = reg.docker_ref(&format!("{repo}:2.4"));
    let out = copy_all(
        &reg.skopeo_args(true),
        &science_oci_ref("jupyter-sci"),
        &dest,
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );

    let reqs = reg.token_requests();
    assert!(!reqs.is_empty());
    assert!(
        reqs.iter().all(|r| r.has_credentials && r.granted),
        "{reqs:?}"
    );
    assert!(reqs
        .iter()
        .all(|r| r.service.as_deref() == Some(TOKEN_SERVICE)));
    assert!(
        reqs.iter().any(|r| r.asked_for_action(repo, "push")),
        "{reqs:?}"
    );

    // Pull back into a layout: same index digest.
    let tmp = tempfile::tempdir().unwrap();
    let pulled = format!("oci:{}:2.4", tmp.path().join("pulled").display());
    let out = copy_all(&reg.skopeo_args(false), &dest, &pulled);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        sha256_digest(&skopeo_inspect_raw::<&str>(&pulled, &[])),
        JUPYTER_INDEX
    );

    // Anonymous and wrong credentials get nothing.
    let out = try_skopeo(["inspect", "--raw", "--tls-verify=false", &dest]);
    assert!(!out.status.success());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let realm = reg.token_server().unwrap().realm();
    let scope = format!("repository:{repo}:pull");
    let q = [("service", TOKEN_SERVICE), ("scope", scope.as_str())];
    let anon = client.get(&realm).query(&q).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let wrong = client
        .get(&realm)
        .query(&q)
        .basic_auth("bob", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let last2: Vec<_> = reg.token_requests().into_iter().rev().take(2).collect();
    assert!(!last2[1].has_credentials && !last2[1].granted);
    assert!(last2[0].has_credentials && !last2[0].granted);

    // Cross-repo mount: needs pull on the source as well as push on the target.
    let manifest = json(&layout_blob("jupyter-sci", JUPYTER_INDEX));
    let amd64 = json(&layout_blob(
        "jupyter-sci",
        manifest["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let layer = amd64["layers"][0]["digest"].as_str().unwrap().to_owned();
    let get_token = |scopes: Vec<String>| {
        let client = client.clone();
        let realm = realm.clone();
        async move {
            let mut q = vec![("service".to_string(), TOKEN_SERVICE.to_string())];
            q.extend(scopes.into_iter().map(|s| ("scope".to_string(), s)));
            let resp = client
                .get(&realm)
                .query(&q)
                .basic_auth("bob", Some("hunter2"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let body: Value = json(&resp.bytes().await.unwrap());
            assert_eq!(body["expires_in"], 300);
            assert_eq!(body["token"], body["access_token"]);
            body["token"].as_str().unwrap().to_owned()
        }
    };
    let mount_url = format!(
        "{}/v2/science/copy/blobs/uploads/?mount={layer}&from={repo}",
        reg.base_url()
    );
    let push_only = get_token(vec!["repository:science/copy:push,pull".into()]).await;
    let resp = client
        .post(&mount_url)
        .bearer_auth(&push_only)
        .send()
        .await
        .unwrap();
    // distribution 2.8 asks for pull on the source in the challenge (401),
    // rather than opening an upload session (202).
    assert_eq!(resp.status(), 401, "no pull on the source");
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains(&format!("repository:{repo}:pull")),
        "{challenge}"
    );
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    let both = get_token(vec![
        "repository:science/copy:push,pull".into(),
        format!("repository:{repo}:pull"),
    ])
    .await;
    let claims = support::token::decode_claims(&both);
    assert_eq!(claims["aud"], TOKEN_SERVICE);
    assert_eq!(claims["access"].as_array().unwrap().len(), 2);
    assert_eq!(claims["access"][1]["name"], repo);
    assert_eq!(claims["access"][1]["actions"], serde_json::json!(["pull"]));
    let resp = client
        .post(&mount_url)
        .bearer_auth(&both)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "mounted");
    let last = reg.token_requests().pop().unwrap();
    assert!(last.asked_for(&format!("repository:{repo}:pull")));
    assert!(last.asked_for_action("science/copy", "push"));

    // skopeo registry-to-registry copy: note what it asks the token server.
    reg.clear_token_requests();
    let mut args = reg.skopeo_args(false);
    args.extend(reg.skopeo_args(true));
    let out = copy_all(&args, &dest, &reg.docker_ref("science/mirror:2.4"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // skopeo mounts the blobs, asking for pull on the source in the same request.
    let reqs = reg.token_requests();
    assert!(
        reqs.iter()
            .any(|r| r.asked_for_action("science/mirror", "push")
                && r.asked_for(&format!("repository:{repo}:pull"))),
        "{reqs:#?}"
    );
    assert!(reg
        .log()
        .contains("\"POST /v2/science/mirror/blobs/uploads/?from="));
}

// ------------------------------------------------------------------ proxy

#[test]
fn proxy_forwards_skopeo_push_and_counts() {
    let reg = Registry::plain();
    let proxy = Proxy::start(reg.addr());
    let dest = proxy.docker_ref("science/astro-base:1.0");
    let out = copy_all(
        &reg.skopeo_tls_args(true),
        &science_oci_ref("astro-base"),
        &dest,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Two platform manifests and the index.
    assert_eq!(
        proxy.count("PUT", "/manifests/"),
        3,
        "{:#?}",
        proxy.requests()
    );
    assert!(proxy.count("POST", "/blobs/uploads/") > 0);
    // Uploads followed Locations that pointed at the proxy (Host preserved).
    assert!(
        proxy.count("PUT", "/blobs/uploads/") > 0,
        "{:#?}",
        proxy.requests()
    );
    assert!(proxy
        .request_log()
        .iter()
        .all(|r| r.header("host") == Some(proxy.addr().as_str())));
    assert!(proxy.request_log().iter().all(|r| r.status.is_some()));
    // Same bytes in the registry, read directly.
    let raw = skopeo_inspect_raw(
        &reg.docker_ref("science/astro-base:1.0"),
        &reg.skopeo_inspect_args(),
    );
    assert_eq!(sha256_digest(&raw), ASTRO_INDEX);
    proxy.clear();
    assert!(proxy.requests().is_empty());
}

#[tokio::test]
async fn proxy_injects_faults() {
    let reg = Registry::plain();
    let proxy = Proxy::start(reg.addr());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let v2 = format!("{}/v2/", proxy.base_url());

    proxy.fail_with("GET", "/v2/", 500, 2);
    for _ in 0..2 {
        let resp = client.get(&v2).send().await.unwrap();
        assert_eq!(resp.status(), 500);
        let body: Value = json(&resp.bytes().await.unwrap());
        assert_eq!(body["errors"][0]["code"], "UNKNOWN");
        assert_eq!(body["errors"][0]["message"], "injected failure");
    }
    assert_eq!(client.get(&v2).send().await.unwrap().status(), 200);
    assert_eq!(proxy.count("GET", "/v2/"), 3);
    // Only the third reached the registry (the other 200 is the readiness probe).
    assert_eq!(
        reg.log().matches("\"GET /v2/ HTTP/1.1\" 200").count(),
        2,
        "{}",
        reg.log()
    );

    proxy.retry_after_429("*", "/v2/", 3, 1);
    let resp = client.get(&v2).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    assert_eq!(client.get(&v2).send().await.unwrap().status(), 200);
    assert_eq!(proxy.pending_faults(), 0);

    // Upload Locations point at the proxy.
    let start = |client: reqwest::Client| {
        let url = format!("{}/v2/t/blob/blobs/uploads/", proxy.base_url());
        async move {
            let resp = client.post(url).send().await.unwrap();
            assert_eq!(resp.status(), 202);
            resp.headers()["location"].to_str().unwrap().to_owned()
        }
    };
    let location = start(client.clone()).await;
    assert!(
        location.starts_with(&format!("{}/v2/t/blob/blobs/uploads/", proxy.base_url())),
        "{location}"
    );

    // drop_after: the client sees a broken connection, not a response.
    let blob: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&blob);
    proxy.drop_after("PUT", "/blobs/uploads/", 1024, 1);
    let err = client
        .put(format!("{location}&digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .expect_err("connection must be dropped");
    assert!(!err.is_status(), "{err:?}");
    let dropped = proxy.request_log().pop().unwrap();
    assert_eq!(dropped.method, "PUT");
    assert_eq!(dropped.status, None);

    // fail_with on a PUT with a big body: the client gets the 500 (the body
    // is drained first), and the session is untouched (nothing forwarded).
    let location = start(client.clone()).await;
    proxy.fail_with("PUT", "/blobs/uploads/", 500, 1);
    let resp = client
        .put(format!("{location}&digest={digest}"))
        .body(vec![7u8; 8 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);

    // The next attempt goes through, on the same session.
    let resp = client
        .put(format!("{location}&digest={digest}"))
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let got = client
        .get(format!("{}/v2/t/blob/blobs/{digest}", proxy.base_url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), blob.as_slice());
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 3);
}

/// Streams `size` bytes through the proxy into the registry and back,
/// hashing on the fly; returns the peak RSS of this process in KiB.
async fn stream_blob_through_proxy(size: u64) -> u64 {
    let reg = Registry::plain();
    let proxy = Proxy::start(reg.addr());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    const CHUNK: usize = 1 << 20;
    let chunk = move |i: u64| -> bytes::Bytes {
        let len = CHUNK.min((size - i * CHUNK as u64) as usize);
        bytes::Bytes::from(vec![(i % 256) as u8; len])
    };
    let n_chunks = size.div_ceil(CHUNK as u64);
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    for i in 0..n_chunks {
        sha2::Digest::update(&mut hasher, chunk(i));
    }
    let digest = format!("sha256:{:x}", sha2::Digest::finalize(hasher));

    let resp = client
        .post(format!("{}/v2/big/blob/blobs/uploads/", proxy.base_url()))
        .send()
        .await
        .unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let stream = futures::stream::iter(0..n_chunks).map(move |i| Ok::<_, std::io::Error>(chunk(i)));
    let resp = client
        .put(format!("{location}&digest={digest}"))
        .header("content-length", size)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        201,
        "{}",
        resp.text().await.unwrap_or_default()
    );

    let resp = client
        .get(format!("{}/v2/big/blob/blobs/{digest}", proxy.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut got = 0u64;
    while let Some(part) = body.next().await {
        let part = part.unwrap();
        got += part.len() as u64;
        sha2::Digest::update(&mut hasher, &part);
    }
    assert_eq!(got, size);
    assert_eq!(
        format!("sha256:{:x}", sha2::Digest::finalize(hasher)),
        digest
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn proxy_streams_a_64_mib_blob() {
    stream_blob_through_proxy(64 << 20).await;
}
