//! A real distribution registry (`docker-registry serve CONFIG.yml`, Debian's
//! distribution 2.8.2) on 127.0.0.1, in a fresh temporary directory, with
//! optional htpasswd or token auth and optional TLS. Killed on drop.
//!
//! ```text
//! let reg = Registry::start(RegistryOpts::token("bob", "pw").with_tls());
//! let mut args = vec!["copy".to_string(), "--all".into()];
//! args.extend(reg.skopeo_args(true)); // --dest-creds bob:pw --dest-cert-dir DIR
//! args.extend([science_oci_ref("astro-base"), reg.docker_ref("science/astro:1.0")]);
//! skopeo(args);
//! assert!(reg.token_requests().iter().any(|r| r.asked_for_action("science/astro", "push")));
//! ```

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::token::{TokenRequest, TokenServer};
use super::tools::free_port;

/// How clients must authenticate to the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No authentication.
    #[default]
    None,
    /// `auth.htpasswd` with a bcrypt file holding one user.
    Htpasswd {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
    /// `auth.token` backed by an in-process [`TokenServer`] that knows one user.
    Token {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
}

/// Options for [`Registry::start`].
#[derive(Debug, Clone, Default)]
pub struct RegistryOpts {
    /// Authentication mode.
    pub auth: Auth,
    /// Serve HTTPS with a self-signed certificate (SAN IP:127.0.0.1, DNS:localhost).
    pub tls: bool,
    /// Leave `storage.delete.enabled` off, as distribution ships: manifest DELETEs are
    /// answered 405 `UNSUPPORTED`. (By default the test registry allows deletes.)
    pub no_delete: bool,
}

impl RegistryOpts {
    /// Plain HTTP, no auth.
    pub fn plain() -> Self {
        Self::default()
    }

    /// Plain HTTP with htpasswd (Basic) auth.
    pub fn htpasswd(user: &str, pass: &str) -> Self {
        Self {
            auth: Auth::Htpasswd {
                user: user.into(),
                pass: pass.into(),
            },
            ..Self::default()
        }
    }

    /// Plain HTTP with token (Bearer) auth.
    pub fn token(user: &str, pass: &str) -> Self {
        Self {
            auth: Auth::Token {
                user: user.into(),
                pass: pass.into(),
            },
            ..Self::default()
        }
    }

    /// The same options, served over TLS.
    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// The same options, with manifest deletes refused (see [`RegistryOpts::no_delete`]).
    pub fn without_delete(mut self) -> Self {
        self.no_delete = true;
        self
    }
}

/// The `service` name the registry announces and expects as token audience.
pub const TOKEN_SERVICE: &str = "graft-test-registry";
/// The issuer name the registry trusts.
pub const TOKEN_ISSUER: &str = "graft-test-token-issuer";

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const START_ATTEMPTS: usize = 5;

/// A running registry process. Dropping it kills the process (and the token
/// server) and removes the temporary directory.
pub struct Registry {
    child: Child,
    addr: String,
    opts: RegistryOpts,
    token: Option<TokenServer>,
    ca_pem: Option<String>,
    log_path: PathBuf,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers 200 or 401.
    /// Panics with the registry's log if it does not come up.
    pub fn start(opts: RegistryOpts) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("graft-registry-")
            .tempdir()
            .expect("create registry tempdir");
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("storage")).unwrap();

        let mut auth_yaml = String::new();
        let mut token = None;
        match &opts.auth {
            Auth::None => {}
            Auth::Htpasswd { user, pass } => {
                let out = super::tools::run_ok(Command::new("htpasswd").args(["-Bbn", user, pass]));
                let path = root.join("htpasswd");
                fs::write(&path, &out.stdout).unwrap();
                auth_yaml = format!(
                    "auth:\n  htpasswd:\n    realm: graft-test\n    path: {}\n",
                    yaml_str(&path)
                );
            }
            Auth::Token { user, pass } => {
                let server = TokenServer::start(user, pass, TOKEN_ISSUER);
                let bundle = root.join("token-root.pem");
                fs::write(&bundle, server.cert_pem()).unwrap();
                auth_yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    yaml_str(Path::new(&server.realm())),
                    TOKEN_SERVICE,
                    TOKEN_ISSUER,
                    yaml_str(&bundle)
                );
                token = Some(server);
            }
        }

        let mut tls_yaml = String::new();
        let mut ca_pem = None;
        if opts.tls {
            let (cert_pem, key_pem) = self_signed_server_cert();
            let tls_dir = root.join("tls");
            let cert_dir = root.join("certs.d");
            fs::create_dir_all(&tls_dir).unwrap();
            fs::create_dir_all(&cert_dir).unwrap();
            fs::write(tls_dir.join("server.crt"), &cert_pem).unwrap();
            fs::write(tls_dir.join("server.key"), &key_pem).unwrap();
            // Only ca.crt in here: containers/image treats *.key/*.cert in a
            // cert dir as a client certificate pair.
            fs::write(cert_dir.join("ca.crt"), &cert_pem).unwrap();
            tls_yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                yaml_str(&tls_dir.join("server.crt")),
                yaml_str(&tls_dir.join("server.key"))
            );
            ca_pem = Some(cert_pem);
        }

        let log_path = root.join("registry.log");
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\n\
                 log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: {delete}\n  \
                 maintenance:\n    uploadpurging:\n      enabled: false\n\
                 http:\n  addr: {addr}\n  secret: graft-test-secret\n{tls_yaml}\
                 {auth_yaml}",
                storage = yaml_str(&root.join("storage")),
                delete = !opts.no_delete,
            );
            let config_path = root.join("config.yml");
            fs::write(&config_path, config).unwrap();
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("open registry log");
            let mut child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry (apt-get install docker-registry)");
            let scheme = if opts.tls { "https" } else { "http" };
            let client = http_client(ca_pem.as_deref(), Some(Duration::from_secs(5)));
            match wait_ready(&mut child, &client, &format!("{scheme}://{addr}/v2/")) {
                Ok(()) => {
                    return Registry {
                        child,
                        addr,
                        opts,
                        token,
                        ca_pem,
                        log_path,
                        dir,
                    };
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = fs::read_to_string(&log_path).unwrap_or_default();
                    if !last_log.contains("address already in use") {
                        panic!(
                            "registry did not become ready: {why}\n--- registry log ---\n{last_log}"
                        );
                    }
                    let _ = fs::remove_file(&log_path);
                }
            }
        }
        panic!("registry could not get a free port\n--- registry log ---\n{last_log}");
    }

    /// Plain HTTP, no auth: `Registry::start(RegistryOpts::plain())`.
    pub fn plain() -> Registry {
        Registry::start(RegistryOpts::plain())
    }

    /// `127.0.0.1:PORT`, the registry host for references
    /// (`127.0.0.1:PORT/repo:tag`).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The port the registry listens on.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        let scheme = if self.opts.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Whether the registry serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.opts.tls
    }

    /// The auth mode.
    pub fn auth(&self) -> &Auth {
        &self.opts.auth
    }

    /// The user name, if the registry has auth.
    pub fn user(&self) -> Option<&str> {
        match &self.opts.auth {
            Auth::None => None,
            Auth::Htpasswd { user, .. } | Auth::Token { user, .. } => Some(user),
        }
    }

    /// The password, if the registry has auth.
    pub fn pass(&self) -> Option<&str> {
        match &self.opts.auth {
            Auth::None => None,
            Auth::Htpasswd { pass, .. } | Auth::Token { pass, .. } => Some(pass),
        }
    }

    /// `user:pass`, if the registry has auth.
    pub fn creds(&self) -> Option<String> {
        Some(format!("{}:{}", self.user()?, self.pass()?))
    }

    /// A directory holding only `ca.crt` (the server's self-signed
    /// certificate): usable as skopeo's or graft's `--cert-dir`.
    /// Panics if the registry is not TLS.
    pub fn cert_dir(&self) -> PathBuf {
        assert!(self.opts.tls, "cert_dir() on a registry without TLS");
        self.dir.path().join("certs.d")
    }

    /// PEM of the certificate to trust, if TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The temporary directory (config, storage, log, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's filesystem storage root.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Everything the registry wrote to stdout and stderr (access log included).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The token server, for a token registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }

    /// Every request the token server received (empty without token auth).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.token
            .as_ref()
            .map(TokenServer::requests)
            .unwrap_or_default()
    }

    /// Forgets the token server's recorded requests.
    pub fn clear_token_requests(&self) {
        if let Some(t) = &self.token {
            t.clear();
        }
    }

    /// `docker://127.0.0.1:PORT/<repo_ref>` for skopeo, e.g.
    /// `reg.docker_ref("science/astro:1.0")`.
    pub fn docker_ref(&self, repo_ref: &str) -> String {
        format!("docker://{}/{repo_ref}", self.addr)
    }

    /// `127.0.0.1:PORT/<repo_ref>`, an image reference for graft.
    pub fn image_ref(&self, repo_ref: &str) -> String {
        format!("{}/{repo_ref}", self.addr)
    }

    /// `--src-creds user:pass` / `--dest-creds user:pass` (empty without auth).
    pub fn skopeo_creds_args(&self, dest: bool) -> Vec<String> {
        match self.creds() {
            Some(c) => vec![side_flag(dest, "creds"), c],
            None => vec![],
        }
    }

    /// `--src-tls-verify=false` / `--dest-tls-verify=false` for plain HTTP,
    /// `--src-cert-dir DIR` / `--dest-cert-dir DIR` for TLS.
    pub fn skopeo_tls_args(&self, dest: bool) -> Vec<String> {
        if self.opts.tls {
            vec![
                side_flag(dest, "cert-dir"),
                self.cert_dir().display().to_string(),
            ]
        } else {
            vec![format!("{}=false", side_flag(dest, "tls-verify"))]
        }
    }

    /// [`Self::skopeo_creds_args`] followed by [`Self::skopeo_tls_args`].
    pub fn skopeo_args(&self, dest: bool) -> Vec<String> {
        let mut v = self.skopeo_creds_args(dest);
        v.extend(self.skopeo_tls_args(dest));
        v
    }

    /// Flags for single-image skopeo commands (`inspect`, `delete`,
    /// `list-tags`): `--creds`, and `--tls-verify=false` or `--cert-dir`.
    pub fn skopeo_inspect_args(&self) -> Vec<String> {
        let mut v = match self.creds() {
            Some(c) => vec!["--creds".to_string(), c],
            None => vec![],
        };
        if self.opts.tls {
            v.push("--cert-dir".into());
            v.push(self.cert_dir().display().to_string());
        } else {
            v.push("--tls-verify=false".into());
        }
        v
    }

    /// A reqwest client that trusts the registry's certificate (if TLS) and
    /// ignores proxy environment variables.
    pub fn http_client(&self) -> reqwest::Client {
        http_client(self.ca_pem.as_deref(), None)
    }

    /// Writes a Docker `config.json` with this registry's credentials
    /// (`{"auths":{"127.0.0.1:PORT":{"auth":base64(user:pass)}}}`) into
    /// `dir` and returns its path; point `DOCKER_CONFIG` at `dir`.
    /// Without auth, writes `{"auths":{}}`.
    pub fn write_docker_config(&self, dir: &Path) -> PathBuf {
        let auths = match self.creds() {
            Some(c) => serde_json::json!({ self.addr.clone(): { "auth": STANDARD.encode(c) } }),
            None => serde_json::json!({}),
        };
        fs::create_dir_all(dir).unwrap();
        let path = dir.join("config.json");
        fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).unwrap();
        path
    }

    /// Push a sample science image (`astro-base` or `jupyter-sci`) here at `repo_tag` with
    /// skopeo, digests preserved.
    pub fn seed(&self, name: &str, repo_tag: &str) {
        let mut args = vec![
            "copy".to_string(),
            "--all".into(),
            "--preserve-digests".into(),
        ];
        args.extend(self.skopeo_args(true));
        args.push(super::tools::science_oci_ref(name));
        args.push(self.docker_ref(repo_tag));
        super::tools::skopeo(&args);
    }

    /// The exact manifest bytes at `repo_ref`, read by skopeo.
    pub fn raw(&self, repo_ref: &str) -> Vec<u8> {
        super::tools::skopeo_inspect_raw(&self.docker_ref(repo_ref), &self.skopeo_inspect_args())
    }

    /// graft's flags for this registry: `--creds` if any, and `--cert-dir` or
    /// `--tls-verify=false`.
    pub fn graft_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(c) = self.creds() {
            v.push("--creds".to_string());
            v.push(c);
        }
        if self.opts.tls {
            v.push("--cert-dir".into());
            v.push(self.cert_dir().display().to_string());
        } else {
            v.push("--tls-verify=false".into());
        }
        v
    }

    /// Unpack the amd64 image at `repo_ref` with umoci (after a skopeo copy of that platform
    /// into a layout under `dir`); returns the rootfs.
    pub fn unpack_amd64(&self, repo_ref: &str, dir: &Path) -> PathBuf {
        let layout = dir.join("amd64");
        super::tools::skopeo([
            "copy",
            "--src-tls-verify=false",
            "--override-arch",
            "amd64",
            &self.docker_ref(repo_ref),
            &format!("oci:{}:x", layout.display()),
        ]);
        let bundle = dir.join("bundle");
        super::tools::umoci([
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:x", layout.display()),
            bundle.to_str().unwrap(),
        ]);
        bundle.join("rootfs")
    }

    /// Upload `bytes` as a blob of `repo` with a plain HTTP client (an independent client:
    /// POST, then PUT to the returned Location); returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let client = self.http_client();
        let base = self.base_url();
        let digest = super::tools::sha256_digest(bytes);
        let (repo, bytes, d) = (repo.to_string(), bytes.to_vec(), digest.clone());
        super::block_on(async move {
            let resp = client
                .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            let loc = resp.headers()["location"].to_str().unwrap().to_string();
            let loc = if loc.starts_with("http") {
                loc
            } else {
                format!("{base}{loc}")
            };
            let sep = if loc.contains('?') { '&' } else { '?' };
            let resp = client
                .put(format!("{loc}{sep}digest={d}"))
                .header("Content-Type", "application/octet-stream")
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                201,
                "{}",
                resp.text().await.unwrap_or_default()
            );
        });
        digest
    }

    /// PUT a manifest's bytes at `repo:reference` with a plain HTTP client.
    pub fn push_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        let client = self.http_client();
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.base_url());
        let (bytes, mt) = (bytes.to_vec(), media_type.to_string());
        super::block_on(async move {
            let resp = client
                .put(&url)
                .header("Content-Type", mt)
                .body(bytes)
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                201,
                "PUT {url}: {}",
                resp.text().await.unwrap_or_default()
            );
        });
    }

    /// The registry's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_client(ca_pem: Option<&str>, timeout: Option<Duration>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().no_proxy();
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes()).expect("parse registry cert"),
        );
    }
    b.build().expect("build reqwest client")
}

/// Polls `GET url` until it answers 200 or 401 (ready), the process exits,
/// another status comes back, or [`READY_TIMEOUT`] passes.
fn wait_ready(child: &mut Child, client: &reqwest::Client, url: &str) -> Result<(), String> {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("poll registry process") {
            return Err(format!("registry exited early with {status}"));
        }
        let c = client.clone();
        let u = url.to_owned();
        let answer = super::block_on(async move { c.get(u).send().await.map(|r| r.status()) });
        match answer {
            Ok(s) if s.as_u16() == 200 || s.as_u16() == 401 => return Ok(()),
            Ok(s) => return Err(format!("GET /v2/ answered {s}")),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(25))
            }
            Err(e) => return Err(format!("no answer within {READY_TIMEOUT:?}: {e}")),
        }
    }
}

fn side_flag(dest: bool, name: &str) -> String {
    format!("--{}-{name}", if dest { "dest" } else { "src" })
}

/// A double-quoted YAML scalar.
fn yaml_str(p: &Path) -> String {
    let s = p.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A self-signed (non-CA) server certificate for 127.0.0.1 and localhost:
/// (certificate PEM, PKCS#8 key PEM).
fn self_signed_server_cert() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("generate TLS key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params.subject_alt_names = vec![
        rcgen::SanType::IpAddress(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
        rcgen::SanType::DnsName("localhost".try_into().unwrap()),
    ];
    let cert = params.self_signed(&key).expect("self-sign TLS cert");
    (cert.pem(), key.serialize_pem())
}
