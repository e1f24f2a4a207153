//! Registry authentication: `WWW-Authenticate` challenges, the Bearer token flow with
//! per-repository scopes, and a token cache.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::credentials::Credential;

/// An authentication challenge from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// No authentication needed.
    None,
    /// HTTP Basic.
    Basic,
    /// Bearer token from `realm`, for `service`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// Service name to ask the token for.
        service: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
        }),
        _ => None,
    }
}

/// Parse `k="v",k2=v2` auth params (quoted values may contain commas).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    out
}

/// A token scope: `repository:<name>:<actions>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// Repository name.
    pub repository: String,
    /// Whether push is needed as well as pull.
    pub push: bool,
    /// Whether delete is needed as well (manifest deletes).
    pub delete: bool,
}

impl Scope {
    /// Pull access to `repository`.
    pub fn pull(repository: &str) -> Scope {
        Scope {
            repository: repository.to_string(),
            push: false,
            delete: false,
        }
    }

    /// Pull and push access to `repository`.
    pub fn push(repository: &str) -> Scope {
        Scope {
            repository: repository.to_string(),
            push: true,
            delete: false,
        }
    }

    /// Pull and delete access to `repository` (as distribution's token scopes name it).
    pub fn delete(repository: &str) -> Scope {
        Scope {
            repository: repository.to_string(),
            push: false,
            delete: true,
        }
    }

    /// The scope string sent to the token server.
    pub fn as_param(&self) -> String {
        let actions = match (self.push, self.delete) {
            (false, false) => "pull",
            (true, false) => "pull,push",
            (false, true) => "pull,delete",
            (true, true) => "pull,push,delete",
        };
        format!("repository:{}:{}", self.repository, actions)
    }
}

/// A token endpoint's answer.
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A cached bearer token.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub expires: Instant,
}

/// Token cache keyed by the scope list a token was issued for.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<String, Token>>,
}

impl TokenCache {
    /// The cache key for a scope list (order kept: the first scope is the one some
    /// registries read).
    pub fn key(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(Scope::as_param)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A still-valid token for `key`.
    pub async fn get(&self, key: &str) -> Option<String> {
        let tokens = self.tokens.lock().await;
        let t = tokens.get(key)?;
        (t.expires > Instant::now()).then(|| t.value.clone())
    }

    /// Remember a token; it is considered expired 30 s early.
    pub async fn put(&self, key: String, value: String, expires_in: Option<u64>) {
        let life = Duration::from_secs(expires_in.unwrap_or(60).max(60));
        let expires = Instant::now() + life.saturating_sub(Duration::from_secs(30));
        self.tokens
            .lock()
            .await
            .insert(key, Token { value, expires });
    }

    /// Forget a token (after the registry refused it).
    pub async fn forget(&self, key: &str) {
        self.tokens.lock().await.remove(key);
    }
}

/// The `Authorization` header value for HTTP Basic.
pub fn basic_header(cred: &Credential) -> Option<String> {
    use base64::Engine as _;
    match cred {
        Credential::Basic { username, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        )),
        Credential::IdentityToken(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn scope_strings() {
        assert_eq!(Scope::push("a/b").as_param(), "repository:a/b:pull,push");
        assert_eq!(
            TokenCache::key(&[Scope::push("t"), Scope::pull("s")]),
            "repository:t:pull,push repository:s:pull"
        );
    }
}
