//! The HTTP side of a registry: scheme detection, TLS options, authentication, retries with
//! backoff, request logging with credentials redacted, and registry error decoding.
//!
//! A registry is a peer graft does not trust. Credentials go only to the origin (scheme, host,
//! port) they were given for; every wait for a byte has an idle limit; every document read
//! into memory has a size limit checked before it is buffered (see the `*_LIMIT` constants).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

use super::auth::{basic_header, parse_challenge, Challenge, Scope, TokenAnswer, TokenCache};
use super::credentials::{Credential, CredentialConfig};
use crate::error::{Error, RegistryErrorItem, Result};

/// The largest manifest or index graft reads (as distribution's own limit); referrers API
/// answers are indexes too.
pub(crate) use crate::store::MANIFEST_LIMIT;
/// The largest token server answer graft reads.
pub(crate) const TOKEN_LIMIT: u64 = 1 << 20;
/// How much of an error answer's body graft reads (the rest is not needed to report it).
pub(crate) const ERROR_LIMIT: u64 = 1 << 20;
/// The largest page of a tag list (a registry that lists every tag on one page, as Docker Hub
/// does, stays far below it).
pub(crate) const TAGS_PAGE_LIMIT: u64 = 16 << 20;
/// The most pages of a tag list graft follows.
pub(crate) const MAX_TAG_PAGES: usize = 10_000;
/// The shortest wait for the answer to an upload's final request (see [`RegistryConfig::commit_timeout`]).
const MIN_COMMIT_TIMEOUT: Duration = Duration::from_secs(600);

/// How to talk to registries: TLS, credentials, retries, uploads.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Verify TLS certificates, and refuse plain HTTP. `false` also allows plain HTTP.
    pub tls_verify: bool,
    /// A directory of extra CA certificates (`*.crt`, e.g. `ca.crt`).
    pub cert_dir: Option<PathBuf>,
    /// Where credentials come from.
    pub credentials: CredentialConfig,
    /// How many times a failed request is retried (5xx, 429, dropped connections).
    pub retries: u32,
    /// First retry delay; doubles on each attempt.
    pub backoff: Duration,
    /// Upload blobs in chunks of this many bytes instead of one streamed PUT.
    pub chunk_size: Option<u64>,
    /// How long a connection may stay silent (no byte received, or none of an upload's bytes
    /// taken) before the request fails as timed out, and is retried like a dropped connection.
    pub timeout: Duration,
}

impl RegistryConfig {
    /// How long graft waits for the answer to an upload's last request once every byte is
    /// sent: registries on object storage may take minutes to commit a large blob, so this is
    /// ten times [`RegistryConfig::timeout`], and at least ten minutes.
    pub fn commit_timeout(&self) -> Duration {
        self.timeout.saturating_mul(10).max(MIN_COMMIT_TIMEOUT)
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            tls_verify: true,
            cert_dir: None,
            credentials: CredentialConfig::default(),
            retries: 5,
            backoff: Duration::from_millis(200),
            chunk_size: None,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A request body that can be sent more than once.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
}

/// The answer to [`Registry::get_document`].
pub(crate) enum Document {
    /// A success answer's headers and its whole body.
    Body {
        /// The answer's headers.
        headers: HeaderMap,
        /// The body, at most the limit asked for.
        bytes: Bytes,
    },
    /// Any other answer, unread, for the caller to judge.
    Status(Response),
}

/// A connection to one registry host, shared by every repository on it.
pub struct Registry {
    host: String,
    /// Every request but uploads: an idle limit on every read.
    http: reqwest::Client,
    /// Uploads (PATCH, PUT with a body): reqwest's read timeout would also run while the body
    /// is being sent, so these are watched by [`Registry::send_stream`] instead.
    upload: reqwest::Client,
    cfg: RegistryConfig,
    endpoint: OnceCell<(Url, Challenge)>,
    /// The challenge of a repository path when `/v2/` itself was open (per-repository auth).
    challenge: std::sync::Mutex<Option<Challenge>>,
    credential: OnceCell<Option<Credential>>,
    tokens: TokenCache,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .finish()
    }
}

impl Registry {
    /// A client for `host` (`host[:port]`).
    pub fn new(host: &str, cfg: RegistryConfig) -> Result<Arc<Registry>> {
        let mut roots = Vec::new();
        if let Some(dir) = &cfg.cert_dir {
            let entries =
                std::fs::read_dir(dir).map_err(|e| Error::io("reading cert dir", dir, e))?;
            let mut names: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            names.sort();
            for path in names {
                let pem = std::fs::read(&path).map_err(|e| Error::io("reading", &path, e))?;
                let certs =
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| Error::Invalid {
                        what: format!("certificate file {}", path.display()),
                        reason: e.to_string(),
                    })?;
                roots.extend(certs);
            }
        }
        let tls_verify = cfg.tls_verify;
        let builder = || {
            // Redirects (blob GETs to storage) are followed; reqwest drops the Authorization
            // header when one leaves the origin. With TLS verification on, none may lead to
            // plain HTTP.
            let redirects = reqwest::redirect::Policy::custom(move |attempt| {
                if attempt.previous().len() >= 10 {
                    attempt.error("more than 10 redirects")
                } else if tls_verify && attempt.url().scheme() != "https" {
                    attempt.error("a redirect to plain HTTP, refused while TLS verification is on")
                } else {
                    attempt.follow()
                }
            });
            let mut b = reqwest::Client::builder()
                .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(
                    cfg.timeout
                        .clamp(Duration::from_secs(1), Duration::from_secs(30)),
                )
                .pool_idle_timeout(Duration::from_secs(30))
                .redirect(redirects)
                .danger_accept_invalid_certs(!tls_verify);
            for c in &roots {
                b = b.add_root_certificate(c.clone());
            }
            b
        };
        let built = |r: reqwest::Result<reqwest::Client>| {
            r.map_err(|e| Error::Http {
                context: "building the HTTP client".into(),
                source: e,
            })
        };
        let upload = built(builder().build())?;
        let http = built(builder().read_timeout(cfg.timeout).build())?;
        Ok(Arc::new(Registry {
            host: host.to_string(),
            http,
            upload,
            cfg,
            endpoint: OnceCell::new(),
            challenge: std::sync::Mutex::new(None),
            credential: OnceCell::new(),
            tokens: TokenCache::default(),
        }))
    }

    /// The registry host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The configuration in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.cfg
    }

    async fn credential(&self) -> Result<Option<Credential>> {
        self.credential
            .get_or_try_init(|| self.cfg.credentials.lookup(&self.host))
            .await
            .cloned()
    }

    /// The base URL (`https://host/`) and the auth challenge, found by pinging `/v2/` once.
    async fn endpoint(&self) -> Result<&(Url, Challenge)> {
        self.endpoint.get_or_try_init(|| self.ping()).await
    }

    async fn ping(&self) -> Result<(Url, Challenge)> {
        if self.cfg.tls_verify {
            return self.probe("https", false).await;
        }
        // HTTPS with a plain-HTTP fallback: both asked at once (an anonymous GET /v2/ carries
        // nothing secret), HTTPS's answer wins whenever it gets one.
        let https = self.probe("https", true);
        let http = self.probe("http", false);
        tokio::pin!(https, http);
        let mut plain = None;
        let secure = loop {
            tokio::select! {
                r = &mut https => break r,
                r = &mut http, if plain.is_none() => plain = Some(r),
            }
        };
        match secure {
            Err(Error::Http { .. }) => match plain {
                Some(r) => r,
                None => http.await,
            },
            answered => answered,
        }
    }

    /// GET `/v2/` over `scheme`: the base URL and challenge, a registry error if it answered
    /// with one, or [`Error::Http`] if it could not be reached (`probing`: without retries,
    /// as the other scheme is being tried).
    async fn probe(&self, scheme: &str, probing: bool) -> Result<(Url, Challenge)> {
        let base = Url::parse(&format!("{scheme}://{}/", self.host)).map_err(|e| {
            Error::InvalidReference {
                input: self.host.clone(),
                reason: format!("not a valid registry host: {e}"),
            }
        })?;
        let url = base.join("v2/").expect("static path");
        let mut attempt = 0;
        let resp = loop {
            let r = self.http.get(url.clone()).send().await;
            match r {
                Ok(r) if should_retry_status(r.status()) && attempt < self.cfg.retries => {}
                Ok(r) => break Ok(r),
                // While probing HTTPS with a plain-HTTP fallback, a failed connection means
                // "try HTTP", not "try again".
                Err(e)
                    if is_transient(&e)
                        && !probing
                        && attempt < self.cfg.retries
                        && !self.is_tls_or_refused(&e) => {}
                Err(e) => break Err(e),
            }
            tokio::time::sleep(self.backoff(attempt)).await;
            attempt += 1;
        };
        match resp {
            Ok(r) => {
                log_response(&Method::GET, &url, r.status());
                let status = r.status();
                if status.is_success() {
                    return Ok((base, Challenge::None));
                }
                if status == StatusCode::UNAUTHORIZED {
                    let challenge = r
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge)
                        .unwrap_or(Challenge::Basic);
                    return Ok((base, challenge));
                }
                Err(registry_error(&Method::GET, &url, r).await)
            }
            Err(e) => {
                tracing::debug!("GET {} failed: {e}", redact_url(&url));
                Err(Error::Http {
                    context: format!(
                        "cannot reach registry {} (GET {})",
                        self.host,
                        redact_url(&url)
                    ),
                    source: e,
                })
            }
        }
    }

    fn is_tls_or_refused(&self, e: &reqwest::Error) -> bool {
        // A refused connection or a TLS failure will not heal by retrying; try the next scheme.
        let text = format!("{e:?}").to_ascii_lowercase();
        text.contains("refused")
            || text.contains("tls")
            || text.contains("certificate")
            || text.contains("ssl")
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let d = self.cfg.backoff.saturating_mul(1 << attempt.min(10));
        d.min(Duration::from_secs(10))
    }

    /// A URL on this registry for `path` (which starts with `v2/`).
    pub(crate) async fn url(&self, path: &str) -> Result<Url> {
        let (base, _) = self.endpoint().await?;
        base.join(path).map_err(|e| Error::Invalid {
            what: "registry path".into(),
            reason: format!("{path}: {e}"),
        })
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port of its base URL):
    /// the only place credentials are sent.
    pub(crate) async fn is_own_origin(&self, url: &Url) -> Result<bool> {
        let (base, _) = self.endpoint().await?;
        Ok(base.origin() == url.origin())
    }

    /// Resolve a `Location` header (absolute or relative) against the registry's base URL.
    /// An upload may continue on another origin (storage, a CDN), where no credentials follow
    /// it; with TLS verification on, never over plain HTTP.
    pub(crate) async fn location(&self, resp: &Response) -> Result<Url> {
        let loc = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Invalid {
                what: format!("answer from {}", self.host),
                reason: format!("{} without a Location header", resp.status()),
            })?
            .to_string();
        let (base, _) = self.endpoint().await?;
        let url = base.join(&loc).map_err(|e| Error::Invalid {
            what: format!("answer from {}", self.host),
            reason: format!("bad Location {:?}: {e}", redact_str(&loc)),
        })?;
        if url.origin() != base.origin() {
            if self.cfg.tls_verify && url.scheme() != "https" {
                return Err(Error::Invalid {
                    what: format!("answer from {}", self.host),
                    reason: format!(
                        "the upload Location {} is not HTTPS; refused while TLS verification is on",
                        redact_url(&url)
                    ),
                });
            }
            tracing::debug!(
                "upload continues at {} (another origin: no credentials sent there)",
                redact_url(&url)
            );
        }
        Ok(url)
    }

    /// The challenge in force: `/v2/`'s, or the one a repository path answered with when
    /// `/v2/` was open.
    async fn challenge(&self) -> Result<Challenge> {
        let (_, challenge) = self.endpoint().await?;
        if *challenge == Challenge::None {
            if let Some(c) = self.challenge.lock().expect("challenge lock").clone() {
                return Ok(c);
            }
        }
        Ok(challenge.clone())
    }

    /// Remember the challenge of a 401 from a repository path when `/v2/` asked for none
    /// (registries that authenticate per repository), so the retry carries credentials.
    async fn learn_challenge(&self, resp: &Response) -> Result<bool> {
        let (_, challenge) = self.endpoint().await?;
        if *challenge != Challenge::None {
            return Ok(false);
        }
        let Some(found) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(false);
        };
        let mut slot = self.challenge.lock().expect("challenge lock");
        let changed = slot.as_ref() != Some(&found);
        *slot = Some(found);
        Ok(changed)
    }

    /// The `Authorization` header for a request needing `scopes`.
    async fn authorization(&self, scopes: &[Scope], fresh: bool) -> Result<Option<String>> {
        match self.challenge().await? {
            Challenge::None => Ok(None),
            Challenge::Basic => Ok(self.credential().await?.as_ref().and_then(basic_header)),
            Challenge::Bearer { realm, service } => {
                let key = TokenCache::key(scopes);
                if fresh {
                    self.tokens.forget(&key).await;
                } else if let Some(t) = self.tokens.get(&key).await {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let (token, expires_in) =
                    self.fetch_token(&realm, service.as_deref(), scopes).await?;
                self.tokens.put(key, token.clone(), expires_in).await;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[Scope],
    ) -> Result<(String, Option<u64>)> {
        let auth_err = |reason: String| Error::Auth {
            registry: self.host.clone(),
            reason,
        };
        // The realm's own query parameters are kept; graft's are added after them.
        let realm_url = Url::parse(realm).map_err(|e| {
            auth_err(format!(
                "token realm {:?} is not a URL: {e}",
                redact_str(realm)
            ))
        })?;
        let cred = self.credential().await?;
        if cred.is_some() && self.cfg.tls_verify && realm_url.scheme() != "https" {
            // The registry names the realm: a plain-HTTP one would carry the credentials in
            // clear text to wherever the registry points.
            return Err(auth_err(format!(
                "the registry's token realm {} is not HTTPS: credentials go to a token server \
                 only over HTTPS while TLS verification is on",
                redact_url(&realm_url)
            )));
        }
        let mut attempt = 0;
        loop {
            let mut url = realm_url.clone();
            let method;
            let req = match &cred {
                Some(Credential::IdentityToken(refresh)) => {
                    let mut form = url::form_urlencoded::Serializer::new(String::new());
                    form.append_pair("grant_type", "refresh_token");
                    form.append_pair("refresh_token", refresh);
                    form.append_pair("client_id", "graft");
                    if let Some(s) = service {
                        form.append_pair("service", s);
                    }
                    let scope = scopes
                        .iter()
                        .map(Scope::as_param)
                        .collect::<Vec<_>>()
                        .join(" ");
                    form.append_pair("scope", &scope);
                    method = Method::POST;
                    self.http
                        .post(url.clone())
                        .header(
                            reqwest::header::CONTENT_TYPE,
                            "application/x-www-form-urlencoded",
                        )
                        .body(form.finish())
                }
                other => {
                    {
                        let mut q = url.query_pairs_mut();
                        if let Some(s) = service {
                            q.append_pair("service", s);
                        }
                        for s in scopes {
                            q.append_pair("scope", &s.as_param());
                        }
                        if let Some(c) = other {
                            q.append_pair("account", c.username());
                        }
                    }
                    method = Method::GET;
                    let mut r = self.http.get(url.clone());
                    if let Some(h) = other.as_ref().and_then(basic_header) {
                        r = r.header(AUTHORIZATION, sensitive(&h));
                    }
                    r
                }
            };
            let resp = req.send().await;
            let retry = match &resp {
                Ok(r) => should_retry_status(r.status()),
                Err(e) => is_transient(e),
            };
            if retry && attempt < self.cfg.retries {
                tokio::time::sleep(self.backoff(attempt)).await;
                attempt += 1;
                continue;
            }
            let resp = resp.map_err(|e| Error::Http {
                context: format!("requesting a token from {}", redact_url(&url)),
                source: e,
            })?;
            log_response(&method, &url, resp.status());
            let status = resp.status();
            if !status.is_success() {
                let who = match &cred {
                    Some(c) => format!("the credentials for {:?} were refused", c.username()),
                    None => "anonymous access was refused (no credentials found: use --creds or an auth file)".to_string(),
                };
                return Err(auth_err(format!("token server answered {status}: {who}")));
            }
            let what = format!("the token answer from {}", redact_url(&url));
            let body = match self.read_limited(resp, TOKEN_LIMIT, &what).await {
                Err(e) if e.is_retryable() && attempt < self.cfg.retries => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                r => r?,
            };
            let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
                auth_err("the token server's answer is not JSON with a token".into())
            })?;
            let token = answer
                .token
                .filter(|t| !t.is_empty())
                .or(answer.access_token)
                .ok_or_else(|| auth_err("the token server's answer has no token".into()))?;
            return Ok((token, answer.expires_in));
        }
    }

    /// Read a whole answer body of at most `limit` bytes: refused before buffering when its
    /// `Content-Length` says more, and as soon as more arrives otherwise. Each read waits at
    /// most the idle timeout. `what` names the document in errors.
    pub(crate) async fn read_limited(
        &self,
        resp: Response,
        limit: u64,
        what: &str,
    ) -> Result<Bytes> {
        let too_large = |size: String| Error::Invalid {
            what: what.to_string(),
            reason: format!(
                "{size} is more than the {} graft reads for it; refused",
                human(limit)
            ),
        };
        if let Some(len) = resp.content_length().filter(|l| *l > limit) {
            return Err(too_large(format!("the announced {len} bytes")));
        }
        let mut body = resp.bytes_stream();
        let mut buf = BytesMut::new();
        loop {
            let next = match tokio::time::timeout(self.cfg.timeout, body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(Error::Http {
                        context: format!("reading {what}"),
                        source: self.timed_out().await,
                    })
                }
            };
            match next {
                None => return Ok(buf.freeze()),
                Some(Err(e)) => {
                    return Err(Error::Http {
                        context: format!("reading {what}"),
                        source: e,
                    })
                }
                Some(Ok(chunk)) => {
                    if (buf.len() + chunk.len()) as u64 > limit {
                        return Err(too_large("the answer".into()));
                    }
                    buf.extend_from_slice(&chunk);
                }
            }
        }
    }

    /// A reqwest timeout error, for a wait graft times itself (the caller's context names
    /// the request). reqwest has no public constructor for its errors: a request with a zero
    /// deadline yields a genuine one, so these timeouts stay retryable and read like
    /// reqwest's own. It is addressed to port 0 of the loopback address, so that nothing can
    /// be reached even if the connector starts before the deadline is checked.
    ///
    /// The connector and the deadline race: a refused connection can come back first. So it
    /// asks again until the error is the timeout (in practice within a few tries), and after
    /// 1000 tries settles for the last error, a connection error that is retried the same way.
    async fn timed_out(&self) -> reqwest::Error {
        let mut tries = 0;
        loop {
            tries += 1;
            let r = self
                .upload
                .head("http://127.0.0.1:0/")
                .timeout(Duration::ZERO)
                .send()
                .await;
            if let Err(e) = r {
                let e = e.without_url();
                if e.is_timeout() || tries >= 1000 {
                    return e;
                }
            }
        }
    }

    /// Send a request whose body can be repeated, retrying on 5xx, 429 (honouring
    /// `Retry-After`) and dropped connections, and re-authenticating once on 401.
    /// Any other status is returned for the caller to judge.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        scopes: &[Scope],
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response> {
        let mut attempt = 0;
        let mut fresh = false;
        let own = self.is_own_origin(&url).await?;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if own {
                if let Some(a) = self.authorization(scopes, fresh).await? {
                    req = req.header(AUTHORIZATION, sensitive(&a));
                }
            }
            req = match &body {
                Body::Empty => req,
                Body::Bytes(b) => req.body(b.clone()),
            };
            match req.send().await {
                Ok(resp) => {
                    log_response(&method, &url, resp.status());
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && own && !fresh {
                        self.learn_challenge(&resp).await?;
                        fresh = true;
                        continue;
                    }
                    if should_retry_status(status) && attempt < self.cfg.retries {
                        let wait = retry_after(&resp).unwrap_or_else(|| self.backoff(attempt));
                        tracing::debug!(
                            "retrying {method} {} in {wait:?} after {status}",
                            redact_url(&url)
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
                Err(e) if is_transient(&e) && attempt < self.cfg.retries => {
                    tracing::debug!("retrying {method} {} after: {e}", redact_url(&url));
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(Error::Http {
                        context: format!("{method} {}", redact_url(&url)),
                        source: e,
                    })
                }
            }
        }
    }

    /// GET a document of at most `limit` bytes (`what` names it in errors). The request and
    /// the reading of its body are retried together on transient failures, a stalled body
    /// included.
    pub(crate) async fn get_document(
        &self,
        url: &Url,
        scopes: &[Scope],
        headers: HeaderMap,
        limit: u64,
        what: &str,
    ) -> Result<Document> {
        let mut attempt = 0;
        loop {
            let resp = self
                .send(
                    Method::GET,
                    url.clone(),
                    scopes,
                    headers.clone(),
                    Body::Empty,
                )
                .await?;
            if !resp.status().is_success() {
                return Ok(Document::Status(resp));
            }
            let headers = resp.headers().clone();
            match self.read_limited(resp, limit, what).await {
                Ok(bytes) => return Ok(Document::Body { headers, bytes }),
                Err(e) if e.is_retryable() && attempt < self.cfg.retries => {
                    tracing::debug!("retrying GET {} after: {e}", redact_url(url));
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Send a request with a streamed body, once (the caller retries by reopening the stream).
    /// While the body is being sent, the registry must take some of it within the idle
    /// timeout; once all of it is sent, the answer may take up to
    /// [`RegistryConfig::commit_timeout`] (a registry commits the blob before it answers).
    pub(crate) async fn send_stream(
        &self,
        method: Method,
        url: Url,
        scopes: &[Scope],
        headers: HeaderMap,
        body: crate::store::BlobStream,
    ) -> Result<Response> {
        let mut req = self
            .upload
            .request(method.clone(), url.clone())
            .headers(headers);
        if self.is_own_origin(&url).await? {
            if let Some(a) = self.authorization(scopes, false).await? {
                req = req.header(AUTHORIZATION, sensitive(&a));
            }
        }
        // Every chunk taken by the connection, and the end of the body, is signalled here.
        let (progress, mut watch) = tokio::sync::watch::channel(false);
        let body =
            futures::stream::unfold((body, Some(progress)), |(mut body, progress)| async move {
                let tx = progress?;
                match body.next().await {
                    Some(item) => {
                        tx.send_replace(false);
                        Some((item, (body, Some(tx))))
                    }
                    None => {
                        tx.send_replace(true);
                        None
                    }
                }
            });
        let send = req.body(reqwest::Body::wrap_stream(body)).send();
        tokio::pin!(send);
        let idle = self.cfg.timeout;
        let commit = self.cfg.commit_timeout();
        let answered = loop {
            if *watch.borrow_and_update() {
                break tokio::time::timeout(commit, &mut send).await.ok();
            }
            tokio::select! {
                r = &mut send => break Some(r),
                changed = tokio::time::timeout(idle, watch.changed()) => match changed {
                    Err(_) => break None,
                    Ok(Ok(())) => {}
                    // The body was dropped (the request failed or ended): wait for the answer.
                    Ok(Err(_)) => break tokio::time::timeout(commit, &mut send).await.ok(),
                },
            }
        };
        let resp = match answered {
            Some(r) => r.map_err(|e| Error::Http {
                context: format!("{method} {}", redact_url(&url)),
                source: e,
            })?,
            None => {
                tracing::debug!("{method} {} timed out", redact_url(&url));
                return Err(Error::Http {
                    context: format!("{method} {}", redact_url(&url)),
                    source: self.timed_out().await,
                });
            }
        };
        log_response(&method, &url, resp.status());
        Ok(resp)
    }

    /// Turn an unexpected answer into an error; a 401 becomes an authentication error that
    /// names the user (never the secret).
    pub(crate) async fn error(&self, method: &Method, url: &Url, resp: Response) -> Error {
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let status = resp.status();
            let cred = self.credential().await.ok().flatten();
            let own = self.is_own_origin(url).await.unwrap_or(false);
            let challenge = self.challenge().await.unwrap_or(Challenge::None);
            // Whether this request carried the credentials: only to the registry's origin,
            // and only once the registry asked for them in a way they can answer.
            let sent = own
                && match (&challenge, &cred) {
                    (Challenge::None, _) | (_, None) => false,
                    (Challenge::Basic, Some(c)) => basic_header(c).is_some(),
                    (Challenge::Bearer { .. }, Some(_)) => true,
                };
            let err = registry_error(method, url, resp).await;
            let who = match (&cred, sent) {
                (Some(c), true) => format!("the registry refused the credentials for {:?}", c.username()),
                (None, _) => "the registry asks for credentials and none were given (use --creds, --authfile or docker login)".into(),
                (Some(c), false) if !own => format!(
                    "the answer is from another origin than the registry's, and the credentials for {:?} are sent only to the registry",
                    c.username()
                ),
                (Some(c), false) => format!(
                    "the registry asks for credentials without a challenge graft can answer, so the credentials for {:?} were not sent",
                    c.username()
                ),
            };
            let detail = match &err {
                Error::Registry { errors, .. } if !errors.is_empty() => format!(
                    " ({})",
                    errors
                        .iter()
                        .map(|i| format!("{}: {}", i.code, i.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                _ => String::new(),
            };
            return Error::Auth {
                registry: self.host.clone(),
                reason: format!(
                    "{method} {} answered {status}{detail}: {who}",
                    redact_url(url)
                ),
            };
        }
        registry_error(method, url, resp).await
    }
}

fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

fn should_retry_status(s: StatusCode) -> bool {
    s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS
}

fn is_transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// Decode a registry error answer into [`Error::Registry`] with the registry's codes.
pub(crate) async fn registry_error(method: &Method, url: &Url, resp: Response) -> Error {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<RegistryErrorItem>,
    }
    let status = resp.status().as_u16();
    let body = read_capped(resp, ERROR_LIMIT).await;
    let mut errors = serde_json::from_slice::<Body>(&body)
        .map(|b| b.errors)
        .unwrap_or_default();
    if errors.is_empty() && !body.is_empty() && body.len() < 512 {
        let text = String::from_utf8_lossy(&body).trim().to_string();
        if !text.is_empty() {
            errors.push(RegistryErrorItem {
                code: String::new(),
                message: text,
                detail: None,
            });
        }
    }
    Error::Registry {
        method: method.to_string(),
        url: redact_url(url),
        status,
        errors,
    }
}

/// The first `cap` bytes of an answer's body (an error's explanation): what arrived before
/// the cap, a failure or a silence of [`ERROR_WAIT`]; never more is buffered.
async fn read_capped(resp: Response, cap: u64) -> Bytes {
    let mut body = resp.bytes_stream();
    let mut buf = BytesMut::new();
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout(ERROR_WAIT, body.next()).await {
        let room = (cap as usize).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() as u64 >= cap {
            break;
        }
    }
    buf.freeze()
}

/// How long an error answer's body may stay silent before graft reports the error without
/// the rest of it.
const ERROR_WAIT: Duration = Duration::from_secs(10);

fn log_response(method: &Method, url: &Url, status: StatusCode) {
    tracing::debug!("{method} {} -> {}", redact_url(url), status.as_u16());
}

/// A string that should be a URL, safe to print (its query and user info redacted).
fn redact_str(s: &str) -> String {
    match Url::parse(s) {
        Ok(u) => redact_url(&u),
        Err(_) => s.split(['?', '@']).next().unwrap_or_default().to_string(),
    }
}

/// A byte count for messages: `4 MiB`.
fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

/// A URL safe to print: no user info, and query values other than well-known harmless ones
/// replaced (upload state and pre-signed storage URLs carry secrets).
pub fn redact_url(url: &Url) -> String {
    const SAFE: &[&str] = &[
        "digest", "mount", "from", "n", "last", "service", "scope", "account",
    ];
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SAFE.contains(&k.as_ref()) {
                    v.into_owned()
                } else {
                    "REDACTED".to_string()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_urls() {
        let u =
            Url::parse("https://user:pw@h/v2/x/blobs/uploads/abc?_state=SECRET&digest=sha256:1")
                .unwrap();
        let r = redact_url(&u);
        assert!(
            !r.contains("SECRET") && !r.contains("pw") && !r.contains("user"),
            "{r}"
        );
        assert!(r.contains("digest=sha256%3A1"), "{r}");
    }

    fn registry(base: &str, tls_verify: bool) -> Arc<Registry> {
        let reg = Registry::new(
            "h",
            RegistryConfig {
                tls_verify,
                ..RegistryConfig::default()
            },
        )
        .unwrap();
        reg.endpoint
            .set((Url::parse(base).unwrap(), Challenge::None))
            .unwrap();
        reg
    }

    fn answer(location: &str) -> Response {
        Response::from(
            hyper::Response::builder()
                .status(202)
                .header("location", location)
                .body(Vec::<u8>::new())
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn upload_locations_keep_to_https_and_credentials_to_the_origin() {
        let reg = registry("https://h/", true);
        let own = reg
            .location(&answer("/v2/r/blobs/uploads/1?_state=x"))
            .await
            .unwrap();
        assert!(reg.is_own_origin(&own).await.unwrap());
        let storage = reg
            .location(&answer("https://storage:8443/u?sig=S"))
            .await
            .unwrap();
        assert!(!reg.is_own_origin(&storage).await.unwrap());
        let err = reg
            .location(&answer("http://h/v2/r/blobs/uploads/1?_state=SECRET"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not HTTPS") && !err.contains("SECRET"),
            "{err}"
        );
        // Without TLS verification (plain-HTTP registries), a foreign origin is followed.
        let plain = registry("http://h:5000/", false);
        let other = plain.location(&answer("http://h:5001/u")).await.unwrap();
        assert!(!plain.is_own_origin(&other).await.unwrap());
    }

    #[tokio::test]
    async fn a_self_timed_wait_fails_like_a_reqwest_timeout() {
        let reg = registry("http://h/", false);
        let e = reg.timed_out().await;
        assert!(e.is_timeout() && e.url().is_none(), "{e:?}");
        assert!(Error::Http {
            context: "x".into(),
            source: e
        }
        .is_retryable());
    }

    #[test]
    fn the_commit_wait_is_longer_than_the_idle_one() {
        let mut cfg = RegistryConfig::default();
        assert_eq!(cfg.commit_timeout(), Duration::from_secs(600));
        cfg.timeout = Duration::from_secs(120);
        assert_eq!(cfg.commit_timeout(), Duration::from_secs(1200));
    }
}
