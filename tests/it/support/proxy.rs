//! A recording, fault-injecting HTTP/1.1 reverse proxy for a plain-HTTP
//! registry.
//!
//! It forwards method, path and query, and every header *including the
//! original `Host`* (so the registry writes upload `Location`s that point at
//! the proxy), minus hop-by-hop headers. Bodies stream both ways (nothing is
//! buffered, so 1 GB blobs are fine). Every request is recorded before any
//! fault is applied.
//!
//! Fault rules match a method (`"*"` for any) and a substring of the path and
//! query; each has a remaining count and the oldest live matching rule wins.
//! Injected error answers (`fail_with`, `retry_after_429`) are sent after the
//! request body has been read and discarded, so clients reliably see them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, BodyStream, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{watch, Notify};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// One request seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query as received (e.g. `/v2/a/blobs/uploads/?mount=...`).
    pub path_and_query: String,
    /// Request headers as received, names lower-case, in order.
    pub headers: Vec<(String, String)>,
    /// Status answered to the client: `None` if no response was sent (still
    /// running, connection dropped, or upstream unreachable before headers).
    pub status: Option<u16>,
}

impl ProxiedRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
enum Fault {
    Fail { status: u16 },
    DropAfter { bytes: u64 },
    TooMany { seconds: u64 },
    Hang,
    Rewrite { from: String, to: String },
    Answer(Responder),
}

/// A synthetic answer: `(status, headers, body)`.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// The function behind a [`Responder`].
type AnswerFn = dyn Fn(&str, &str) -> Option<Answer> + Send + Sync;

/// Computes the answer to a request from its method and path and query; `None` forwards it.
#[derive(Clone)]
pub struct Responder(Arc<AnswerFn>);

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

#[derive(Debug)]
struct Rule {
    method: String,
    path: String,
    fault: Fault,
    remaining: usize,
}

struct State {
    upstream: String,
    requests: Mutex<Vec<ProxiedRequest>>,
    rules: Mutex<Vec<Rule>>,
    client: Client<HttpConnector, Body>,
}

impl State {
    fn take_fault(&self, method: &str, pq: &str) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.remaining > 0 && method_matches(&r.method, method) && pq.contains(&r.path)
        })?;
        rule.remaining -= 1;
        Some(rule.fault.clone())
    }

    fn set_status(&self, idx: usize, status: u16) {
        if let Some(r) = self.requests.lock().unwrap().get_mut(idx) {
            r.status = Some(status);
        }
    }
}

fn method_matches(rule: &str, method: &str) -> bool {
    rule == "*" || rule.eq_ignore_ascii_case(method)
}

/// A running proxy on 127.0.0.1 (free port). Stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl Proxy {
    /// Starts a proxy in front of the plain-HTTP server at `upstream`
    /// (`"127.0.0.1:PORT"`, e.g. [`super::registry::Registry::addr`]).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener =
            super::block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await })
                .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let client = {
            // Building the client's connector needs a runtime context.
            let _guard = super::runtime().enter();
            Client::builder(TokioExecutor::new()).build_http::<Body>()
        };
        let state = Arc::new(State {
            upstream,
            requests: Mutex::new(Vec::new()),
            rules: Mutex::new(Vec::new()),
            client,
        });
        let (shutdown, rx) = watch::channel(false);
        super::runtime().spawn(serve(listener, state.clone(), rx));
        Proxy {
            addr,
            state,
            shutdown,
        }
    }

    /// `127.0.0.1:PORT`: use it as the registry host in references.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `docker://127.0.0.1:PORT/<repo_ref>` for skopeo.
    pub fn docker_ref(&self, repo_ref: &str) -> String {
        format!("docker://{}/{repo_ref}", self.addr)
    }

    /// `127.0.0.1:PORT/<repo_ref>`, an image reference for graft.
    pub fn image_ref(&self, repo_ref: &str) -> String {
        format!("{}/{repo_ref}", self.addr)
    }

    /// Every request seen so far as `(method, path_and_query)`, oldest first.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.method.clone(), r.path_and_query.clone()))
            .collect()
    }

    /// Every request seen so far with headers and answered status.
    pub fn request_log(&self) -> Vec<ProxiedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Forgets the recorded requests (fault rules stay).
    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// How many recorded requests have `method` (`"*"` for any) and a path
    /// and query containing `path_substring`.
    pub fn count(&self, method: &str, path_substring: &str) -> usize {
        self.state
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| {
                method_matches(method, &r.method) && r.path_and_query.contains(path_substring)
            })
            .count()
    }

    /// The next `times` matching requests are answered `status` with body
    /// `{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}` and are
    /// not forwarded.
    pub fn fail_with(&self, method: &str, path_substring: &str, status: u16, times: usize) {
        self.add_rule(method, path_substring, Fault::Fail { status }, times);
    }

    /// The next `times` matching requests are forwarded, but once `bytes` of
    /// the request body have been read (or the body ended, if shorter) the
    /// client connection is dropped without any response, and the upstream
    /// request is aborted.
    pub fn drop_after(&self, method: &str, path_substring: &str, bytes: u64, times: usize) {
        self.add_rule(method, path_substring, Fault::DropAfter { bytes }, times);
    }

    /// The next `times` matching requests are answered 429 with
    /// `Retry-After: <seconds>` and a `TOOMANYREQUESTS` error body, not forwarded.
    pub fn retry_after_429(&self, method: &str, path_substring: &str, seconds: u64, times: usize) {
        self.add_rule(method, path_substring, Fault::TooMany { seconds }, times);
    }

    /// The next `times` matching requests are recorded and then never answered (the
    /// connection stays open until the client goes away or the proxy stops): a transfer that
    /// is in progress when its process is killed.
    pub fn hang(&self, method: &str, path_substring: &str, times: usize) {
        self.add_rule(method, path_substring, Fault::Hang, times);
    }

    /// The next `times` matching requests are forwarded with `from` replaced by `to` in their
    /// path and query (recorded as received): a registry that answers a different manifest
    /// than it was asked for, e.g. a GET of a tag answered with another tag's manifest while
    /// its HEAD tells the truth.
    pub fn rewrite(&self, method: &str, path_substring: &str, from: &str, to: &str, times: usize) {
        let fault = Fault::Rewrite {
            from: from.to_owned(),
            to: to.to_owned(),
        };
        self.add_rule(method, path_substring, fault, times);
    }

    /// The next `times` matching requests are answered by `answer(method, path_and_query)`
    /// (not forwarded) when it returns `Some`, else forwarded: a registry that makes up
    /// documents.
    pub fn respond(
        &self,
        method: &str,
        path_substring: &str,
        times: usize,
        answer: impl Fn(&str, &str) -> Option<Answer> + Send + Sync + 'static,
    ) {
        let fault = Fault::Answer(Responder(Arc::new(answer)));
        self.add_rule(method, path_substring, fault, times);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.state.rules.lock().unwrap().clear();
    }

    /// Faults not yet used up (sum of remaining counts).
    pub fn pending_faults(&self) -> usize {
        self.state
            .rules
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.remaining)
            .sum()
    }

    fn add_rule(&self, method: &str, path: &str, fault: Fault, times: usize) {
        self.state.rules.lock().unwrap().push(Rule {
            method: method.to_owned(),
            path: path.to_owned(),
            fault,
            remaining: times,
        });
    }
}

impl Drop for Proxy {
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
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let mut conn_rx = rx.clone();
                tokio::spawn(async move {
                    // Fired by a drop_after rule: dropping the connection
                    // future closes the socket with no response.
                    let kill = Arc::new(Notify::new());
                    let k = kill.clone();
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, state.clone(), k.clone())
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                        _ = conn_rx.changed() => {}
                    }
                });
            }
        }
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

fn error_response(status: u16, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn full(s: String) -> Body {
    Full::new(Bytes::from(s))
        .map_err(|never| -> BoxError { match never {} })
        .boxed()
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    kill: Arc<Notify>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().as_str().to_owned();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    let idx = {
        let mut reqs = state.requests.lock().unwrap();
        reqs.push(ProxiedRequest {
            method: method.clone(),
            path_and_query: pq.clone(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            status: None,
        });
        reqs.len() - 1
    };

    let fault = state.take_fault(&method, &pq);
    let mut pq = pq;
    match fault {
        Some(Fault::Rewrite { from, to }) => pq = pq.replace(&from, &to),
        Some(Fault::Answer(Responder(answer))) => {
            if let Some((status, headers, body)) = answer(&method, &pq) {
                drain(req.into_body()).await;
                state.set_status(idx, status);
                let len = body.len();
                let body = if method == "HEAD" { Vec::new() } else { body };
                let mut resp = Response::new(
                    Full::new(Bytes::from(body))
                        .map_err(|never| -> BoxError { match never {} })
                        .boxed(),
                );
                *resp.status_mut() =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                for (n, v) in headers {
                    if let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(n.as_bytes()),
                        HeaderValue::from_str(&v),
                    ) {
                        resp.headers_mut().insert(n, v);
                    }
                }
                resp.headers_mut()
                    .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(len));
                return Ok(resp);
            }
        }
        Some(Fault::Fail { status }) => {
            drain(req.into_body()).await;
            state.set_status(idx, status);
            return Ok(error_response(status, "UNKNOWN", "injected failure"));
        }
        Some(Fault::TooMany { seconds }) => {
            drain(req.into_body()).await;
            state.set_status(idx, 429);
            let mut resp = error_response(429, "TOOMANYREQUESTS", "injected rate limit");
            resp.headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(seconds));
            return Ok(resp);
        }
        Some(Fault::Hang) => {
            let never = futures::future::pending::<Infallible>().await;
            match never {}
        }
        Some(Fault::DropAfter { bytes }) => {
            drop_after(req, &state, &pq, bytes, &kill).await;
            // The connection is being torn down; never answer.
            let never = futures::future::pending::<Infallible>().await;
            match never {}
        }
        None => {}
    }

    let (parts, body) = req.into_parts();
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
    let upstream_req = upstream_request(&state, &pq, &parts, body);
    match state.client.request(upstream_req).await {
        Ok(resp) => {
            state.set_status(idx, resp.status().as_u16());
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
            Ok(Response::from_parts(parts, body))
        }
        Err(e) => {
            state.set_status(idx, 502);
            Ok(error_response(
                502,
                "UNKNOWN",
                &format!("proxy: upstream failed: {e}"),
            ))
        }
    }
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for h in HOP_BY_HOP {
        headers.remove(HeaderName::from_static(h));
    }
}

fn upstream_request(
    state: &State,
    pq: &str,
    parts: &hyper::http::request::Parts,
    body: Body,
) -> Request<Body> {
    let uri = format!("http://{}{pq}", state.upstream);
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(body)
        .expect("build upstream request");
    // Host included: the legacy client only adds one when it is missing.
    *req.headers_mut() = parts.headers.clone();
    strip_hop_by_hop(req.headers_mut());
    req
}

/// Reads and discards a request body, so that an injected error answer is
/// seen by the client as a response (not a reset while it is still sending).
async fn drain(body: Incoming) {
    let mut frames = BodyStream::new(body);
    while let Some(Ok(_)) = frames.next().await {}
}

/// Forwards `req` but stops after `limit` body bytes: the upstream body then
/// fails (aborting that request) and the client connection is killed.
async fn drop_after(
    req: Request<Incoming>,
    state: &Arc<State>,
    pq: &str,
    limit: u64,
    kill: &Notify,
) {
    let (parts, body) = req.into_parts();
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    let upstream_body = BodyExt::boxed(StreamBody::new(rx));
    let upstream_req = upstream_request(state, pq, &parts, upstream_body);
    let client = state.client.clone();
    // The upstream side finishes (with an error) on its own once the body fails.
    tokio::spawn(async move {
        let _ = client.request(upstream_req).await;
    });
    let mut seen: u64 = 0;
    let mut frames = BodyStream::new(body);
    while seen < limit {
        let Some(Ok(frame)) = frames.next().await else {
            break;
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        let left = limit - seen;
        if data.len() as u64 > left {
            data.truncate(left as usize);
        }
        seen += data.len() as u64;
        if tx.send(Ok(Frame::data(data))).await.is_err() {
            break;
        }
    }
    // Fail the upstream body (bounded wait, in case upstream stalls).
    let fail = tx.send(Err("proxy: drop_after injected connection drop".into()));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), fail).await;
    drop(tx);
    kill.notify_one();
}
