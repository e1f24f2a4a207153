//! A hostile registry peer: a small HTTP/1.1 server on 127.0.0.1 whose every answer is chosen
//! by the test, and which records every request with its headers.
//!
//! A test gives [`Hostile::start`] a function from the request (method, path and query,
//! headers) to a [`Reply`]: a canned answer, headers followed by silence, an endless body, or a
//! forward to a real registry (with its `Location` optionally moved to another origin). Several
//! servers can run side by side: one plays the registry, another the foreign origin it points
//! graft at, and the second's log shows whether any credentials reached it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::watch;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// HTTP method.
    pub method: String,
    /// Path and query as received.
    pub path_and_query: String,
    /// Headers, names lower-case, in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the request carried an `Authorization` header.
    pub fn has_auth(&self) -> bool {
        self.header("authorization").is_some()
    }

    /// The path without its query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split('?')
            .next()
            .unwrap_or(&self.path_and_query)
    }
}

/// What the server answers.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A complete answer.
    Answer {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: Vec<u8>,
    },
    /// The status line and headers, then silence (the connection stays open).
    Stall {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// No answer at all (the connection stays open).
    Silence,
    /// The status line and headers, then a body that never ends (repeats of `chunk`).
    Endless {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// The bytes repeated forever.
        chunk: Vec<u8>,
    },
    /// Forward the request to the plain-HTTP server at `upstream` (`127.0.0.1:PORT`), with the
    /// original `Host` kept; with `location_to` set, the answer's `Location` is moved to that
    /// origin (`http://127.0.0.1:PORT`), path and query kept.
    Forward {
        /// Where to forward.
        upstream: String,
        /// Another origin to point the answer's `Location` at.
        location_to: Option<String>,
    },
}

impl Reply {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Answer {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// `status` with no body and `headers`.
    pub fn status(status: u16, headers: &[(&str, &str)]) -> Reply {
        Reply::Answer {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
        }
    }

    /// This reply with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        match &mut self {
            Reply::Answer { headers, .. }
            | Reply::Stall { headers, .. }
            | Reply::Endless { headers, .. } => headers.push((name.into(), value.into())),
            Reply::Silence | Reply::Forward { .. } => {}
        }
        self
    }

    /// A forward to `upstream`, `Location` untouched.
    pub fn forward(upstream: &str) -> Reply {
        Reply::Forward {
            upstream: upstream.into(),
            location_to: None,
        }
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

struct State {
    handler: Box<Handler>,
    seen: Mutex<Vec<Seen>>,
    client: Client<HttpConnector, Body>,
}

/// A running hostile server on 127.0.0.1 (free port). Stops when dropped.
pub struct Hostile {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

impl Hostile {
    /// Starts a server answering every request with `handler(request)`.
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Hostile {
        let listener =
            super::block_on(async { tokio::net::TcpListener::bind("127.0.0.1:0").await })
                .expect("bind hostile server");
        let addr = listener.local_addr().expect("hostile server addr");
        let client = {
            let _guard = super::runtime().enter();
            Client::builder(TokioExecutor::new()).build_http::<Body>()
        };
        let state = Arc::new(State {
            handler: Box::new(handler),
            seen: Mutex::new(Vec::new()),
            client,
        });
        let (shutdown, rx) = watch::channel(false);
        super::runtime().spawn(serve(listener, state.clone(), rx));
        Hostile {
            addr,
            state,
            shutdown,
        }
    }

    /// `127.0.0.1:PORT`, the registry host for references.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for Hostile {
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

fn boxed(
    body: impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + Sync + 'static,
) -> Body {
    body.map_err(|never| -> BoxError { match never {} }).boxed()
}

fn with_headers(status: u16, headers: &[(String, String)], body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(n.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Response<Body>, Infallible> {
    let seen = Seen {
        method: req.method().as_str().to_owned(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
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
    };
    state.seen.lock().unwrap().push(seen.clone());
    let reply = (state.handler)(&seen);
    Ok(match reply {
        Reply::Answer {
            status,
            headers,
            body,
        } => {
            // Read what the client sends first, so it sees the answer, not a reset.
            let _ = req.into_body().collect().await;
            with_headers(status, &headers, boxed(Full::new(Bytes::from(body))))
        }
        Reply::Stall { status, headers } => {
            let never = futures::stream::pending::<Result<Frame<Bytes>, BoxError>>();
            with_headers(status, &headers, BodyExt::boxed(StreamBody::new(never)))
        }
        Reply::Silence => {
            let never = futures::future::pending::<Infallible>().await;
            match never {}
        }
        Reply::Endless {
            status,
            headers,
            chunk,
        } => {
            let chunk = Bytes::from(chunk);
            let forever = futures::stream::repeat(chunk).map(|c| Ok::<_, BoxError>(Frame::data(c)));
            with_headers(status, &headers, BodyExt::boxed(StreamBody::new(forever)))
        }
        Reply::Forward {
            upstream,
            location_to,
        } => forward(req, &state, &seen, &upstream, location_to.as_deref()).await,
    })
}

async fn forward(
    req: Request<Incoming>,
    state: &State,
    seen: &Seen,
    upstream: &str,
    location_to: Option<&str>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
    let mut up = Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{upstream}{}", seen.path_and_query))
        .body(body)
        .expect("build upstream request");
    *up.headers_mut() = parts.headers.clone();
    up.headers_mut().remove("connection");
    match state.client.request(up).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            if let Some(to) = location_to {
                if let Some(loc) = parts.headers.get("location").and_then(|v| v.to_str().ok()) {
                    // Keep the path and query, move the origin.
                    let rest = match loc.find("://") {
                        Some(i) => {
                            let after = &loc[i + 3..];
                            after.find('/').map(|j| &after[j..]).unwrap_or("/")
                        }
                        None => loc,
                    };
                    let moved = format!("{to}{rest}");
                    parts
                        .headers
                        .insert("location", HeaderValue::try_from(moved).expect("header"));
                }
            }
            parts.headers.remove("connection");
            let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed();
            Response::from_parts(parts, body)
        }
        Err(e) => with_headers(
            502,
            &[],
            boxed(Full::new(Bytes::from(format!("upstream failed: {e}")))),
        ),
    }
}
