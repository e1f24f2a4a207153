//! An in-process Docker token server (the `auth.token` realm of a real
//! distribution registry) that records every request it gets.
//!
//! `GET /token?service=S&scope=SCOPE(&scope=...)&account=A` with HTTP Basic
//! credentials answers `{"token","access_token","expires_in":300,"issued_at"}`.
//! The token is an ES256 JWT whose header carries `x5c` = [DER of a
//! self-signed certificate for the signing key]; the registry is configured
//! with that certificate as `rootcertbundle`, and distribution 2.8 accepts a
//! leaf that is itself in the root pool. Claims: `iss`, `aud` (= service, a
//! string: 2.8 reads `aud` as a string), `sub`, `exp`, `nbf`, `iat`, `jti`,
//! `access` granting exactly the actions asked for in each scope.
//!
//! Missing or wrong credentials answer 401, anonymous requests included.
//! `POST /token` (OAuth2 `grant_type=password` form) is accepted too.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::json;
use tokio::sync::watch;

/// Lifetime of issued tokens, seconds.
pub const EXPIRES_IN: u64 = 300;

/// One request the token server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// HTTP method (`GET`, or `POST` for the OAuth2 form).
    pub method: String,
    /// `service` parameter, if any.
    pub service: Option<String>,
    /// Every scope asked for, in order (repeated `scope` parameters, and
    /// space-separated scopes inside one parameter, are all split out).
    pub scopes: Vec<String>,
    /// `account` parameter (or the OAuth2 `username`), if any.
    pub account: Option<String>,
    /// Whether the request carried credentials (Basic header or OAuth2 form).
    pub has_credentials: bool,
    /// The user name from the credentials, if any.
    pub user: Option<String>,
    /// Whether a token was issued (credentials were right).
    pub granted: bool,
}

impl TokenRequest {
    /// Whether this request asked for exactly `scope`
    /// (e.g. `"repository:science/astro:pull"`).
    pub fn asked_for(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether this request asked for `action` on repository `repo` in any
    /// scope (e.g. `asked_for_action("src/repo", "pull")` matches
    /// `repository:src/repo:pull,push`).
    pub fn asked_for_action(&self, repo: &str, action: &str) -> bool {
        self.scopes.iter().any(|s| match parse_scope(s) {
            Some((ty, name, actions)) => {
                ty == "repository" && name == repo && actions.iter().any(|a| a == action)
            }
            None => false,
        })
    }
}

/// Splits `type:name:actions` (the name may contain `:`, e.g. a port).
fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (ty, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    Some((ty.to_owned(), name.to_owned(), actions))
}

struct State {
    user: String,
    pass: String,
    issuer: String,
    key: SigningKey,
    cert_der_b64: String,
    requests: Mutex<Vec<TokenRequest>>,
    jti: AtomicU64,
    /// Repositories a token that also asks for push gets no access to: models credentials
    /// that may push to one repository but not read another, so cross-repo mounts are refused.
    denied: Mutex<Vec<String>>,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    cert_pem: String,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl TokenServer {
    /// Starts a token server on 127.0.0.1 (free port) that accepts
    /// `user`/`pass` and signs tokens as `issuer`.
    pub fn start(user: &str, pass: &str, issuer: &str) -> TokenServer {
        let key_pair =
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate P-256");
        let key = SigningKey::from_pkcs8_der(&key_pair.serialize_der()).expect("load P-256 key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "graft test token signer");
        let cert = params.self_signed(&key_pair).expect("self-sign token cert");
        let state = Arc::new(State {
            user: user.to_owned(),
            pass: pass.to_owned(),
            issuer: issuer.to_owned(),
            key,
            cert_der_b64: STANDARD.encode(cert.der()),
            requests: Mutex::new(Vec::new()),
            jti: AtomicU64::new(1),
            denied: Mutex::new(Vec::new()),
        });

        let listener =
            super::block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await })
                .expect("bind token server");
        let addr = listener.local_addr().expect("token server addr");
        let (shutdown, rx) = watch::channel(false);
        super::runtime().spawn(serve(listener, state.clone(), rx));
        TokenServer {
            addr,
            cert_pem: cert.pem(),
            state,
            shutdown,
        }
    }

    /// From now on, a token request that asks for push anywhere gets no access to
    /// `repository` (pull-only requests still do): cross-repository mounts from it are refused.
    pub fn deny_in_mounts(&self, repository: &str) {
        self.state
            .denied
            .lock()
            .unwrap()
            .push(repository.to_owned());
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// The realm URL to configure in the registry: `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The issuer name put in `iss`.
    pub fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// PEM of the signing certificate (the registry's `rootcertbundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Issues a token directly (no HTTP), as the server would for `scopes`.
    pub fn issue(&self, service: &str, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        make_token(&self.state, service, &self.state.user, &scopes)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut rx: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = rx.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = state.clone();
                let mut conn_rx = rx.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = conn_rx.changed() => {}
                    }
                });
            }
        }
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/token" {
        return Ok(reply(StatusCode::NOT_FOUND, json!({"error": "not found"})));
    }
    let method = req.method().as_str().to_owned();
    let basic = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())));
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if req.method() == hyper::Method::POST {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        params.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(n, _)| n == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    let creds = basic.or_else(|| match (get("username"), get("password")) {
        (Some(u), Some(p)) => Some((u, p)),
        _ => None,
    });
    let service = get("service");
    let granted = matches!(&creds, Some((u, p)) if *u == state.user && *p == state.pass);
    state.requests.lock().unwrap().push(TokenRequest {
        method,
        service: service.clone(),
        scopes: scopes.clone(),
        account: get("account").or_else(|| get("username")),
        has_credentials: creds.is_some(),
        user: creds.as_ref().map(|(u, _)| u.clone()),
        granted,
    });
    if !granted {
        let mut resp = reply(
            StatusCode::UNAUTHORIZED,
            json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}),
        );
        resp.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"graft-test-token\""),
        );
        return Ok(resp);
    }
    let denied = state.denied.lock().unwrap().clone();
    let pushing = scopes.iter().any(
        |s| matches!(parse_scope(s), Some((_, _, actions)) if actions.iter().any(|a| a == "push")),
    );
    let scopes: Vec<String> = scopes
        .into_iter()
        .filter(|s| {
            !(pushing && matches!(parse_scope(s), Some((_, name, _)) if denied.contains(&name)))
        })
        .collect();
    let token = make_token(
        &state,
        service.as_deref().unwrap_or(""),
        &state.user,
        &scopes,
    );
    Ok(reply(
        StatusCode::OK,
        json!({
            "token": token,
            "access_token": token,
            "expires_in": EXPIRES_IN,
            "issued_at": rfc3339(now_secs()),
        }),
    ))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn make_token(state: &State, service: &str, subject: &str, scopes: &[String]) -> String {
    let now = now_secs();
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| parse_scope(s))
        .map(|(ty, name, actions)| json!({"type": ty, "name": name, "actions": actions}))
        .collect();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [state.cert_der_b64]});
    let claims = json!({
        "iss": state.issuer,
        "sub": subject,
        "aud": service,
        "exp": now + EXPIRES_IN,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("graft-test-{}", state.jti.fetch_add(1, Ordering::Relaxed)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    // JWS ES256 wants the raw 64-byte r||s form, which is what this gives.
    let sig: Signature = state.key.sign(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// Decodes the claims of a JWT (no signature check), for assertions.
pub fn decode_claims(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).expect("JWT has claims");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url claims"))
        .expect("JSON claims")
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[test]
fn rfc3339_known_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
}
