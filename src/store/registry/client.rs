//! The HTTP side of a registry: scheme detection, TLS options, authentication, retries with
//! backoff, request logging with credentials redacted, and registry error decoding.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::OnceCell;
use url::Url;

use super::auth::{basic_header, parse_challenge, Challenge, Scope, TokenAnswer, TokenCache};
use super::credentials::{Credential, CredentialConfig};
use crate::error::{Error, RegistryErrorItem, Result};

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
        }
    }
}

/// A request body that can be sent more than once.
pub(crate) enum Body {
    Empty,
    Bytes(Bytes),
}

/// A connection to one registry host, shared by every repository on it.
pub struct Registry {
    host: String,
    http: reqwest::Client,
    cfg: RegistryConfig,
    endpoint: OnceCell<(Url, Challenge)>,
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
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(!cfg.tls_verify);
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
                for c in certs {
                    builder = builder.add_root_certificate(c);
                }
            }
        }
        let http = builder.build().map_err(|e| Error::Http {
            context: "building the HTTP client".into(),
            source: e,
        })?;
        Ok(Arc::new(Registry {
            host: host.to_string(),
            http,
            cfg,
            endpoint: OnceCell::new(),
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

    /// Resolve a `Location` header (absolute or relative) against the registry's base URL.
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
        base.join(&loc).map_err(|e| Error::Invalid {
            what: format!("answer from {}", self.host),
            reason: format!("bad Location {loc:?}: {e}"),
        })
    }

    /// The `Authorization` header for a request needing `scopes`.
    async fn authorization(&self, scopes: &[Scope], fresh: bool) -> Result<Option<String>> {
        let (_, challenge) = self.endpoint().await?;
        match challenge {
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
                    self.fetch_token(realm, service.as_deref(), scopes).await?;
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
        let mut url = Url::parse(realm)
            .map_err(|e| auth_err(format!("token realm {realm:?} is not a URL: {e}")))?;
        let cred = self.credential().await?;
        let mut attempt = 0;
        loop {
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
                        q.clear();
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
                    let mut r = self.http.get(url.clone());
                    if let Some(h) = other.as_ref().and_then(basic_header) {
                        r = r.header(AUTHORIZATION, h);
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
            log_response(&Method::GET, &url, resp.status());
            let status = resp.status();
            if !status.is_success() {
                let who = match &cred {
                    Some(c) => format!("the credentials for {:?} were refused", c.username()),
                    None => "anonymous access was refused (no credentials found: use --creds or an auth file)".to_string(),
                };
                return Err(auth_err(format!("token server answered {status}: {who}")));
            }
            let body = resp.bytes().await.map_err(|e| Error::Http {
                context: "reading the token answer".into(),
                source: e,
            })?;
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
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(a) = self.authorization(scopes, fresh).await? {
                req = req.header(AUTHORIZATION, sensitive(&a));
            }
            req = match &body {
                Body::Empty => req,
                Body::Bytes(b) => req.body(b.clone()),
            };
            match req.send().await {
                Ok(resp) => {
                    log_response(&method, &url, resp.status());
                    let status = resp.status();
                    if status == StatusCode::UNAUTHORIZED && !fresh {
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

    /// Send a request with a streamed body, once (the caller retries by reopening the stream).
    pub(crate) async fn send_stream(
        &self,
        method: Method,
        url: Url,
        scopes: &[Scope],
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<Response> {
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .headers(headers);
        if let Some(a) = self.authorization(scopes, false).await? {
            req = req.header(AUTHORIZATION, sensitive(&a));
        }
        let resp = req.body(body).send().await.map_err(|e| Error::Http {
            context: format!("{method} {}", redact_url(&url)),
            source: e,
        })?;
        log_response(&method, &url, resp.status());
        Ok(resp)
    }

    /// Turn an unexpected answer into an error; a 401 becomes an authentication error that
    /// names the user (never the secret).
    pub(crate) async fn error(&self, method: &Method, url: &Url, resp: Response) -> Error {
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let status = resp.status();
            let cred = self.credential().await.ok().flatten();
            let err = registry_error(method, url, resp).await;
            let who = match &cred {
                Some(c) => format!("the registry refused the credentials for {:?}", c.username()),
                None => "no credentials found for this registry (use --creds, --authfile or docker login)".into(),
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
    let body = resp.bytes().await.unwrap_or_default();
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

fn log_response(method: &Method, url: &Url, status: StatusCode) {
    tracing::debug!("{method} {} -> {}", redact_url(url), status.as_u16());
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
}
