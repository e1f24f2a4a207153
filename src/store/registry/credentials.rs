//! Registry credentials: `--creds`, auth files (`--authfile`, `$REGISTRY_AUTH_FILE`,
//! containers' `auth.json`, Docker's `config.json`) and `docker-credential-*` helpers.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::reference::DOCKER_HUB_HOST;

/// A credential for one registry. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Username and password (or a personal access token as password).
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in Docker's config).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken(_) => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    /// Parse `user:password` as given to `--creds`.
    pub fn from_user_pass(s: &str) -> Result<Credential> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credential::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(Error::Unsupported(
                "--creds expects USERNAME:PASSWORD (the password may be empty)".into(),
            )),
        }
    }

    /// The username, for messages (never the secret).
    pub fn username(&self) -> &str {
        match self {
            Credential::Basic { username, .. } => username,
            Credential::IdentityToken(_) => "<identity token>",
        }
    }
}

/// Where to look for credentials, in order.
#[derive(Debug, Clone, Default)]
pub struct CredentialConfig {
    /// Credentials given on the command line; they apply to every registry this config serves.
    pub explicit: Option<Credential>,
    /// `--authfile`.
    pub authfile: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl CredentialConfig {
    /// The auth files consulted, in order of precedence.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        if let Some(f) = &self.authfile {
            files.push(f.clone());
            return files;
        }
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
            files.push(PathBuf::from(f));
        }
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
            files.push(Path::new(&d).join("containers/auth.json"));
        }
        if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
            files.push(Path::new(&d).join("config.json"));
        } else if let Some(h) = std::env::var_os("HOME") {
            files.push(Path::new(&h).join(".docker/config.json"));
        }
        files
    }

    /// Find the credential for `registry` (`host[:port]`), or `None` for anonymous access.
    pub async fn lookup(&self, registry: &str) -> Result<Option<Credential>> {
        if let Some(c) = &self.explicit {
            return Ok(Some(c.clone()));
        }
        for path in self.files() {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("reading auth file", &path, e)),
            };
            let file: AuthFile = serde_json::from_str(&text).map_err(|e| Error::Json {
                what: format!("auth file {}", path.display()),
                source: e,
            })?;
            if let Some(c) = lookup_in(&file, &path, registry).await? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

/// The keys a registry may be stored under in an auth file.
fn key_matches(key: &str, registry: &str) -> bool {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    if registry == DOCKER_HUB_HOST {
        matches!(k, "docker.io" | "index.docker.io" | "registry-1.docker.io")
    } else {
        k == registry
    }
}

/// The server URL handed to credential helpers.
fn helper_server_url(registry: &str) -> String {
    if registry == DOCKER_HUB_HOST {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    }
}

async fn lookup_in(file: &AuthFile, path: &Path, registry: &str) -> Result<Option<Credential>> {
    if let Some((_, helper)) = file
        .cred_helpers
        .iter()
        .find(|(k, _)| key_matches(k, registry))
    {
        return run_helper(helper, registry).await;
    }
    if let Some((key, entry)) = file.auths.iter().find(|(k, _)| key_matches(k, registry)) {
        if let Some(t) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(t.to_string())));
        }
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let bad = || Error::Invalid {
                what: format!("auth file {}", path.display()),
                reason: format!("auths[{key:?}].auth is not base64 of user:password"),
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let text = String::from_utf8(raw).map_err(|_| bad())?;
            let (u, p) = text.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credential::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credential::Basic {
                username: u.clone(),
                password: p.clone(),
            }));
        }
    }
    if let Some(store) = &file.creds_store {
        return run_helper(store, registry).await;
    }
    Ok(None)
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Run `docker-credential-<helper> get` with the server URL on stdin.
async fn run_helper(helper: &str, registry: &str) -> Result<Option<Credential>> {
    let program = format!("docker-credential-{helper}");
    let auth_err = |reason: String| Error::Auth {
        registry: registry.to_string(),
        reason,
    };
    let mut child = tokio::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| auth_err(format!("cannot run credential helper {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(helper_server_url(registry).as_bytes())
            .await
            .map_err(|e| auth_err(format!("writing to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| auth_err(format!("waiting for {program}: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if msg.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(auth_err(format!(
            "credential helper {program} failed ({}): {}",
            out.status,
            msg.trim()
        )));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|_| {
        auth_err(format!(
            "credential helper {program} printed something that is not its JSON answer"
        ))
    })?;
    if answer.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(answer.secret)));
    }
    Ok(Some(Credential::Basic {
        username: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_hosts() {
        assert!(key_matches("https://index.docker.io/v1/", DOCKER_HUB_HOST));
        assert!(key_matches("docker.io", DOCKER_HUB_HOST));
        assert!(key_matches("127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(key_matches("https://127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(!key_matches("127.0.0.1:5001", "127.0.0.1:5000"));
    }

    #[test]
    fn debug_redacts() {
        let c = Credential::from_user_pass("u:s3cret").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn reads_auth_file_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:pw1");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"a.example:5000":{{"auth":"{b64}"}},"https://index.docker.io/v1/":{{"username":"bob","password":"pw2"}},"c.example":{{"identitytoken":"tok"}}}}}}"#
            ),
        )
        .unwrap();
        let cfg = CredentialConfig {
            explicit: None,
            authfile: Some(path),
        };
        assert_eq!(
            cfg.lookup("a.example:5000").await.unwrap(),
            Some(Credential::Basic {
                username: "alice".into(),
                password: "pw1".into()
            })
        );
        assert_eq!(
            cfg.lookup(DOCKER_HUB_HOST)
                .await
                .unwrap()
                .unwrap()
                .username(),
            "bob"
        );
        assert_eq!(
            cfg.lookup("c.example").await.unwrap(),
            Some(Credential::IdentityToken("tok".into()))
        );
        assert_eq!(cfg.lookup("d.example").await.unwrap(), None);
    }
}
