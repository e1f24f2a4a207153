//! graft against a hostile registry (issue 11, the network side): credentials stay with their
//! origin, every wait has a limit, pagination ends, and every document read into memory has a
//! size limit. The hostile peer is the suite's own server ([`Hostile`]); where a real registry
//! is needed behind it (an upload that must really land), requests are forwarded to one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::graft::{command, Run};
use crate::support::hostile::{Hostile, Reply, Seen};
use crate::support::registry::{Registry, RegistryOpts};
use crate::support::tools::science_oci_ref;

/// `Authorization` for `u:p`.
const BASIC_UP: &str = "Basic dTpw";
/// Virtual memory graft may use in the memory-bounded runs (KiB): far below what buffering a
/// hostile body would take, well above what graft needs.
const MEMORY_KIB: u64 = 2 << 20;

/// Runs graft with `args` under `ulimit -v MEMORY_KIB`, killed after `limit` (then the test
/// fails): its output and how long it took.
fn graft_bounded(args: &[String], limit: Duration) -> (Run, Duration) {
    let home = tempfile::tempdir().unwrap();
    let template = command(home.path());
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -v {MEMORY_KIB} && exec \"$0\" \"$@\""))
        .arg(template.get_program())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env_clear();
    for (k, v) in template.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("run graft");
    loop {
        if child.try_wait().expect("wait for graft").is_some() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect graft");
            panic!(
                "graft still running after {limit:?} (killed):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    let out = child.wait_with_output().expect("collect graft");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    (run, took)
}

fn args(parts: &[&str]) -> Vec<String> {
    let mut v = vec!["-q".to_string(), "--tls-verify=false".to_string()];
    v.extend(parts.iter().map(|s| s.to_string()));
    v
}

/// A registry that wants `u:p` (HTTP Basic) everywhere, then answers with `inner`.
fn basic_auth(
    inner: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |r: &Seen| {
        if r.header("authorization") != Some(BASIC_UP) {
            return Reply::status(401, &[("www-authenticate", "Basic realm=\"hostile\"")]);
        }
        inner(r)
    }
}

fn tags(names: &[&str]) -> Reply {
    Reply::json(200, json!({"name": "r", "tags": names}))
}

#[test]
fn credentials_stay_off_an_upload_location_on_another_origin() {
    let reg = Registry::plain();
    let upstream = reg.addr().to_string();
    let foreign = Hostile::start({
        let upstream = upstream.clone();
        move |_| Reply::forward(&upstream)
    });
    let to = foreign.origin();
    let front = Hostile::start(basic_auth(move |r| {
        if r.method == "POST" && r.path().ends_with("/blobs/uploads/") {
            Reply::Forward {
                upstream: upstream.clone(),
                location_to: Some(to.clone()),
            }
        } else {
            Reply::forward(&upstream)
        }
    }));
    let (run, _) = graft_bounded(
        &args(&[
            "copy",
            &science_oci_ref("astro-base"),
            &format!("docker://{}/hostile/astro:1.0", front.addr()),
            "--creds",
            "u:p",
        ]),
        Duration::from_secs(120),
    );
    let run = run.ok();
    let uploads = foreign.seen();
    assert!(
        uploads.iter().any(|r| r.method == "PUT"),
        "the uploads went to the Location: {uploads:?}\n{}",
        run.all()
    );
    assert!(
        uploads.iter().all(|r| !r.has_auth()),
        "credentials reached another origin: {uploads:?}"
    );
    assert!(front.seen().iter().any(Seen::has_auth));
    assert!(!reg.raw("hostile/astro:1.0").is_empty());
}

#[test]
fn a_tag_list_link_to_another_origin_is_refused_unfollowed() {
    let foreign = Hostile::start(|_| tags(&["evil"]));
    let link = format!("<{}/v2/r/tags/list?last=a>; rel=\"next\"", foreign.origin());
    let front = Hostile::start(basic_auth(move |r| {
        if r.path() == "/v2/r/tags/list" {
            tags(&["a"]).with_header("link", &link)
        } else {
            Reply::json(200, json!({}))
        }
    }));
    let (run, took) = graft_bounded(
        &args(&[
            "ls",
            &format!("docker://{}/r", front.addr()),
            "--creds",
            "u:p",
        ]),
        Duration::from_secs(60),
    );
    let run = run.fails(1);
    assert!(
        run.stderr.contains("another origin") && run.stderr.contains("tag list"),
        "{}",
        run.all()
    );
    assert!(foreign.seen().is_empty(), "followed: {:?}", foreign.seen());
    assert!(took < Duration::from_secs(30));
}

#[test]
fn credentials_never_go_to_a_plain_http_realm_of_a_verified_tls_registry() {
    // The suite's token registry names a plain-HTTP realm (its token server).
    let reg = Registry::start(RegistryOpts::token("bob", "pw").with_tls());
    assert!(reg.token_server().unwrap().realm().starts_with("http://"));
    let mut a = vec!["-q".to_string(), "ls".into(), reg.docker_ref("any/repo")];
    a.extend(reg.graft_args());
    assert!(
        a.iter().any(|x| x == "--cert-dir"),
        "TLS is verified: {a:?}"
    );
    let (run, _) = graft_bounded(&a, Duration::from_secs(60));
    let run = run.fails(1);
    assert!(
        run.stderr.contains("not HTTPS") && run.stderr.contains("token realm"),
        "{}",
        run.all()
    );
    let sent: Vec<_> = reg
        .token_requests()
        .into_iter()
        .filter(|t| t.has_credentials)
        .collect();
    assert!(sent.is_empty(), "credentials sent to the realm: {sent:?}");
}

#[test]
fn a_token_realm_keeps_its_query_parameters() {
    let realm = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let server = Hostile::start({
        let realm = realm.clone();
        move |r| {
            if r.path() == "/token" {
                return if r.header("authorization") == Some(BASIC_UP) {
                    Reply::json(200, json!({"token": "T"}))
                } else {
                    Reply::status(401, &[])
                };
            }
            if r.header("authorization") == Some("Bearer T") {
                return tags(&["a"]);
            }
            let challenge = format!(
                "Bearer realm=\"{}/token?tenant=t1\",service=\"svc\"",
                realm.lock().unwrap()
            );
            Reply::status(401, &[("www-authenticate", challenge.as_str())])
        }
    });
    *realm.lock().unwrap() = server.origin();
    let (run, _) = graft_bounded(
        &args(&[
            "ls",
            &format!("docker://{}/r", server.addr()),
            "--creds",
            "u:p",
        ]),
        Duration::from_secs(60),
    );
    let run = run.ok();
    assert_eq!(run.stdout.trim(), "a");
    let token: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|r| r.path() == "/token")
        .collect();
    assert!(!token.is_empty());
    for t in &token {
        assert!(
            t.path_and_query.contains("tenant=t1") && t.path_and_query.contains("scope="),
            "{}",
            t.path_and_query
        );
    }
}

#[test]
fn a_registry_that_stalls_times_out_and_is_retried() {
    let server = Hostile::start(|r| match r.path() {
        "/v2/" => Reply::json(200, json!({})),
        "/v2/r/manifests/headers" => Reply::Stall {
            status: 200,
            headers: vec![(
                "content-type".into(),
                "application/vnd.oci.image.manifest.v1+json".into(),
            )],
        },
        _ => Reply::Silence,
    });
    for tag in ["headers", "silence"] {
        let (run, took) = graft_bounded(
            &args(&[
                "inspect",
                &format!("docker://{}/r:{tag}", server.addr()),
                "--timeout",
                "2",
                "--retries",
                "1",
            ]),
            Duration::from_secs(60),
        );
        let run = run.fails(1);
        assert!(run.stderr.contains("timed out"), "{tag}: {}", run.all());
        // Two tries of two seconds, a short backoff between them.
        assert!(took < Duration::from_secs(20), "{tag}: took {took:?}");
        let tries = server
            .seen()
            .iter()
            .filter(|r| r.path() == format!("/v2/r/manifests/{tag}"))
            .count();
        assert_eq!(tries, 2, "{tag}: retried once");
    }
}

#[test]
fn a_self_referencing_or_endless_tag_list_stops_with_a_clear_error() {
    let server = Hostile::start(|r| {
        if r.path() == "/v2/self/tags/list" {
            return tags(&["a"]).with_header("link", "</v2/self/tags/list>; rel=\"next\"");
        }
        if r.path() == "/v2/many/tags/list" {
            // A new page every time: ?last=N+1.
            let n: u64 = r
                .path_and_query
                .split("last=")
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let link = format!("</v2/many/tags/list?last={}>; rel=\"next\"", n + 1);
            return tags(&[]).with_header("link", &link);
        }
        Reply::json(200, json!({}))
    });
    let (run, took) = graft_bounded(
        &args(&["ls", &format!("docker://{}/self", server.addr())]),
        Duration::from_secs(60),
    );
    let run = run.fails(1);
    assert!(run.stderr.contains("already read"), "{}", run.all());
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let (run, _) = graft_bounded(
        &args(&["ls", &format!("docker://{}/many", server.addr())]),
        Duration::from_secs(300),
    );
    let run = run.fails(1);
    assert!(
        run.stderr.contains("more than 10000 pages"),
        "{}",
        run.all()
    );
    let pages = server
        .seen()
        .iter()
        .filter(|r| r.path() == "/v2/many/tags/list")
        .count();
    assert_eq!(pages, 10_000);
}

#[test]
fn an_endless_or_oversized_manifest_is_refused_in_bounded_memory() {
    let manifest = "application/vnd.oci.image.manifest.v1+json";
    let server = Hostile::start(move |r| match r.path() {
        "/v2/" => Reply::json(200, json!({})),
        "/v2/r/manifests/endless" => Reply::Endless {
            status: 200,
            headers: vec![("content-type".into(), manifest.into())],
            chunk: vec![b' '; 64 << 10],
        },
        // Announces 6 GB, sends nothing: refused on the announcement.
        _ => Reply::Stall {
            status: 200,
            headers: vec![
                ("content-type".into(), manifest.into()),
                ("content-length".into(), "6000000000".into()),
            ],
        },
    });
    for (tag, expect) in [
        ("endless", "more than the 4 MiB"),
        ("announced", "announced 6000000000 bytes"),
    ] {
        let (run, took) = graft_bounded(
            &args(&["inspect", &format!("docker://{}/r:{tag}", server.addr())]),
            Duration::from_secs(60),
        );
        let run = run.fails(1);
        assert!(run.stderr.contains(expect), "{tag}: {}", run.all());
        assert!(run.stderr.contains("manifest"), "{tag}: {}", run.all());
        assert!(took < Duration::from_secs(20), "{tag}: took {took:?}");
    }
}

#[test]
fn an_endless_token_answer_is_refused_in_bounded_memory() {
    let origin = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let server = Hostile::start({
        let origin = origin.clone();
        move |r| {
            if r.path() == "/token" {
                return Reply::Endless {
                    status: 200,
                    headers: vec![("content-type".into(), "application/json".into())],
                    chunk: vec![b' '; 64 << 10],
                };
            }
            let challenge = format!(
                "Bearer realm=\"{}/token\",service=\"svc\"",
                origin.lock().unwrap()
            );
            Reply::status(401, &[("www-authenticate", challenge.as_str())])
        }
    });
    *origin.lock().unwrap() = server.origin();
    let (run, took) = graft_bounded(
        &args(&["ls", &format!("docker://{}/r", server.addr())]),
        Duration::from_secs(60),
    );
    let run = run.fails(1);
    assert!(
        run.stderr.contains("token answer") && run.stderr.contains("more than the 1 MiB"),
        "{}",
        run.all()
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn an_endless_error_answer_is_reported_in_bounded_memory() {
    let server = Hostile::start(|r| match r.path() {
        "/v2/" => Reply::json(200, json!({})),
        _ => Reply::Endless {
            status: 400,
            headers: vec![("content-type".into(), "application/json".into())],
            chunk: vec![b'x'; 64 << 10],
        },
    });
    let (run, took) = graft_bounded(
        &args(&["inspect", &format!("docker://{}/r:t", server.addr())]),
        Duration::from_secs(60),
    );
    let run = run.fails(1);
    assert!(run.stderr.contains("400"), "{}", run.all());
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn a_401_after_an_open_ping_says_whether_credentials_were_sent() {
    // /v2/ is open; the repository wants u:p (per-repository auth).
    let server = Hostile::start(|r| {
        if r.path() == "/v2/" {
            return Reply::json(200, json!({}));
        }
        if r.header("authorization") == Some(BASIC_UP) {
            return tags(&["a"]);
        }
        Reply::status(401, &[("www-authenticate", "Basic realm=\"repo\"")])
    });
    let target = format!("docker://{}/r", server.addr());

    let (run, _) = graft_bounded(&args(&["ls", &target]), Duration::from_secs(60));
    let run = run.fails(1);
    assert!(
        run.stderr
            .contains("asks for credentials and none were given")
            && run.stderr.contains("--creds")
            && !run.stderr.contains("refused"),
        "{}",
        run.all()
    );

    // Given credentials, graft answers the repository's challenge.
    let (run, _) = graft_bounded(
        &args(&["ls", &target, "--creds", "u:p"]),
        Duration::from_secs(60),
    );
    assert_eq!(run.ok().stdout.trim(), "a");

    let (run, _) = graft_bounded(
        &args(&["ls", &target, "--creds", "u:wrong"]),
        Duration::from_secs(60),
    );
    let run = run.fails(1);
    assert!(
        run.stderr.contains("refused the credentials for \"u\""),
        "{}",
        run.all()
    );
    assert!(!run.all().contains("wrong"), "{}", run.all());
}

#[test]
fn a_digest_pinned_signed_source_mirrors_with_its_signature_into_a_layout_or_archive() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let a = Registry::start(RegistryOpts::plain());
    a.seed("astro-base", "sci/astro:1.0");
    let (key, public) = crate::sign::keypair(home, home, "signer");
    crate::sign::g(
        home,
        &[
            "--tls-verify=false",
            "sign",
            "--key",
            key.to_str().unwrap(),
            &format!("docker://{}", a.image_ref("sci/astro:1.0")),
        ],
    )
    .ok();
    let pinned = crate::support::tools::sha256_digest(&a.raw("sci/astro:1.0"));
    let name = format!("{}@{pinned}", a.image_ref("sci/astro"));
    let sig_name = format!(
        "{}:sha256-{}.sig",
        a.image_ref("sci/astro"),
        pinned.trim_start_matches("sha256:")
    );
    for dest in [
        format!("oci:{}", home.join("layout").display()),
        format!("oci-archive:{}", home.join("export.tar").display()),
    ] {
        let sync = home.join("sync.yaml");
        std::fs::write(
            &sync,
            format!(
                "destination: {dest}\nwith_attachments: true\nsources:\n  - repository: docker://{name}\n"
            ),
        )
        .unwrap();
        let run = crate::graft::capture(command(home).args([
            "-q",
            "-o",
            "json",
            "--tls-verify=false",
            "--retries",
            "0",
            "mirror",
            "--config",
            sync.to_str().unwrap(),
        ]))
        .ok();
        let v = run.json();
        assert_eq!(
            (v["copied"].as_u64(), v["failed"].as_u64()),
            (Some(1), Some(0)),
            "{dest}: {v}"
        );
        assert_eq!(v["images"][0]["digest"], pinned.as_str(), "{v}");
        assert_eq!(v["images"][0]["attachments"]["found"], 1, "{v}");
        // Read back: the image by its pinned name, its signature under the repository's
        // namespace, verified with the signer's key.
        let ls = crate::graft::capture(command(home).args(["-o", "json", "ls", &dest]))
            .ok()
            .json();
        let names: Vec<&str> = ls
            .as_array()
            .or(ls["tags"].as_array())
            .unwrap_or_else(|| panic!("{ls}"))
            .iter()
            .filter_map(|t| t.as_str())
            .collect();
        assert!(
            names.contains(&name.as_str()) && names.contains(&sig_name.as_str()),
            "{dest}: {names:?}"
        );
        crate::sign::g(
            home,
            &[
                "verify",
                "--key",
                public.to_str().unwrap(),
                &format!("{dest}:{name}"),
            ],
        )
        .ok();
    }
}

/// A TLS front on 127.0.0.1 (free port), with a new self-signed certificate for 127.0.0.1:
/// every connection is decrypted and its bytes piped, as they are, to the plain-HTTP server
/// at `upstream`. graft, trusting [`TlsFront::cert_dir`], sees a verified-TLS registry whose
/// answers the server behind decides (the suite's [`Hostile`] server and proxy speak plain
/// HTTP only). Stops when dropped.
struct TlsFront {
    addr: String,
    cert_dir: tempfile::TempDir,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl TlsFront {
    fn start(upstream: &str) -> TlsFront {
        use tokio_rustls::rustls;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::IpAddress(std::net::IpAddr::V4(
            std::net::Ipv4Addr::LOCALHOST,
        ))];
        let cert = params.self_signed(&key).unwrap();
        let cert_dir = tempfile::tempdir().unwrap();
        std::fs::write(cert_dir.path().join("ca.crt"), cert.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = crate::support::block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the TLS front");
        let addr = listener.local_addr().unwrap().to_string();
        let (shutdown, mut stop) = tokio::sync::watch::channel(false);
        let upstream = upstream.to_string();
        crate::support::runtime().spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stop.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let acceptor = acceptor.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront {
            addr,
            cert_dir,
            shutdown,
        }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[test]
fn an_upload_location_downgraded_to_plain_http_gets_no_credentials() {
    let reg = Registry::plain();
    let upstream = reg.addr().to_string();
    // The listener the Location is moved to: it forwards to the registry, so that an upload
    // it accepts lands, and records what reached it.
    let foreign = Hostile::start({
        let upstream = upstream.clone();
        move |_| Reply::forward(&upstream)
    });
    let to = foreign.origin();
    assert!(to.starts_with("http://127.0.0.1:"), "{to}");
    let front = Hostile::start(basic_auth(move |r| {
        if r.method == "POST" && r.path().ends_with("/blobs/uploads/") {
            Reply::Forward {
                upstream: upstream.clone(),
                location_to: Some(to.clone()),
            }
        } else {
            Reply::forward(&upstream)
        }
    }));
    let tls = TlsFront::start(&front.addr());
    let dest = format!("docker://{}/hostile/astro:1.0", tls.addr);
    let copy = |verify: &str| {
        let mut a = vec![
            "-q".to_string(),
            format!("--tls-verify={verify}"),
            "--cert-dir".to_string(),
            tls.cert_dir.path().display().to_string(),
            "--retries".to_string(),
            "0".to_string(),
        ];
        a.extend(
            [
                "copy",
                &science_oci_ref("astro-base"),
                &dest,
                "--creds",
                "u:p",
            ]
            .map(String::from),
        );
        graft_bounded(&a, Duration::from_secs(120)).0
    };

    // TLS verified: the plain-HTTP Location is refused, nothing is sent to it.
    let run = copy("true").fails(1);
    assert!(
        run.stderr.contains(&format!(
            "the upload Location {}/v2/hostile/astro/blobs/uploads/",
            foreign.origin()
        )) && run
            .stderr
            .contains("is not HTTPS; refused while TLS verification is on"),
        "{}",
        run.stderr
    );
    assert!(
        foreign.seen().is_empty(),
        "requests reached the plain-HTTP Location: {:?}",
        foreign.seen()
    );
    // The registry was reached over TLS, with credentials: the refusal is the Location's.
    assert!(front.seen().iter().any(Seen::has_auth));
    assert!(front.seen().iter().any(|r| r.method == "POST"));
    let tags = crate::support::block_on({
        let client = reg.http_client();
        let url = format!("{}/v2/hostile/astro/tags/list", reg.base_url());
        async move { client.get(&url).send().await.unwrap().status().as_u16() }
    });
    assert_eq!(tags, 404, "the image was pushed");

    // Without verification the upload may continue there, but the credentials stay behind.
    copy("false").ok();
    let uploads = foreign.seen();
    assert!(uploads.iter().any(|r| r.method == "PUT"), "{uploads:?}");
    assert!(
        uploads.iter().all(|r| !r.has_auth()),
        "credentials went to plain HTTP: {uploads:?}"
    );
    assert!(!reg.raw("hostile/astro:1.0").is_empty());
}
