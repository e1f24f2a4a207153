//! Image config edits, applied to the config as an ordered JSON value so that every field graft
//! does not own (unknown fields, key order, Healthcheck, OnBuild, …) survives.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::timestamp::Timestamp;

/// Runtime settings a compat layer chain sets, applied to a science config with Dockerfile
/// semantics by [`edit_config`] (chains are merged by [`crate::library::ImageConfig::merge`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Environment variables, merged by name (later wins).
    pub env: Vec<(String, String)>,
    /// Labels, merged by key (later wins).
    pub labels: BTreeMap<String, String>,
    /// `Entrypoint`; setting it without `cmd` clears an inherited `Cmd`, as in a Dockerfile.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `User`.
    pub user: Option<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// Ports added to `ExposedPorts` (`8888/tcp`; a bare number means tcp).
    pub exposed_ports: Vec<String>,
}

/// One appended layer, as the config records it.
#[derive(Debug, Clone)]
pub struct AppendedLayer {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// `history[].created_by`.
    pub created_by: String,
    /// `history[].comment`, if any.
    pub comment: Option<String>,
}

/// Everything graft changes in a config when it appends layers.
#[derive(Debug, Clone)]
pub struct ConfigEdit {
    /// Layers appended, in order.
    pub layers: Vec<AppendedLayer>,
    /// Runtime settings merged into `config`.
    pub runtime: RuntimeConfig,
    /// Labels set after the runtime labels (breadcrumbs, `--label`).
    pub labels: BTreeMap<String, String>,
    /// The new `created` time, also used for the history entries.
    pub created: Timestamp,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: "image config".into(),
        reason: reason.into(),
    }
}

/// Apply `edit` to the config `base` (exact bytes of the science image's config) and return the
/// new config bytes (compact JSON, key order kept).
pub fn edit_config(base: &[u8], edit: &ConfigEdit) -> Result<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(base).map_err(|e| Error::Json {
        what: "image config".into(),
        source: e,
    })?;
    let root = doc
        .as_object_mut()
        .ok_or_else(|| invalid("not a JSON object"))?;
    root.insert("created".into(), Value::String(edit.created.rfc3339()));

    // rootfs.diff_ids
    let rootfs = object_field(root, "rootfs")?;
    if !rootfs.contains_key("type") {
        rootfs.insert("type".into(), Value::String("layers".into()));
    }
    let diff_ids = array_field(rootfs, "diff_ids")?;
    for l in &edit.layers {
        diff_ids.push(Value::String(l.diff_id.to_string()));
    }

    // history: one non-empty entry per appended layer
    let history = array_field(root, "history")?;
    for l in &edit.layers {
        let mut h = Map::new();
        h.insert("created".into(), Value::String(edit.created.rfc3339()));
        h.insert("created_by".into(), Value::String(l.created_by.clone()));
        if let Some(c) = &l.comment {
            h.insert("comment".into(), Value::String(c.clone()));
        }
        history.push(Value::Object(h));
    }

    // config: runtime settings and labels
    let config = object_field(root, "config")?;
    let rt = &edit.runtime;
    if !rt.env.is_empty() {
        let env = array_field(config, "Env")?;
        for (k, v) in &rt.env {
            let entry = Value::String(format!("{k}={v}"));
            let pos = env.iter().position(|e| {
                e.as_str()
                    .is_some_and(|s| s.split_once('=').map(|(n, _)| n).unwrap_or(s) == k)
            });
            match pos {
                Some(i) => env[i] = entry,
                None => env.push(entry),
            }
        }
    }
    if let Some(ep) = &rt.entrypoint {
        config.insert("Entrypoint".into(), strings(ep));
        if rt.cmd.is_none() {
            config.insert("Cmd".into(), Value::Null);
        }
    }
    if let Some(cmd) = &rt.cmd {
        config.insert("Cmd".into(), strings(cmd));
    }
    if let Some(u) = &rt.user {
        config.insert("User".into(), Value::String(u.clone()));
    }
    if let Some(w) = &rt.workdir {
        config.insert("WorkingDir".into(), Value::String(w.clone()));
    }
    if !rt.exposed_ports.is_empty() {
        let ports = object_field(config, "ExposedPorts")?;
        for p in &rt.exposed_ports {
            let p = if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            };
            ports.entry(p).or_insert_with(|| Value::Object(Map::new()));
        }
    }
    if !rt.labels.is_empty() || !edit.labels.is_empty() {
        let labels = object_field(config, "Labels")?;
        for (k, v) in rt.labels.iter().chain(edit.labels.iter()) {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
    }
    serde_json::to_vec(&doc).map_err(|e| Error::Json {
        what: "edited image config".into(),
        source: e,
    })
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// The object at `key`, created if absent or null.
fn object_field<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>> {
    let slot = obj.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| invalid(format!("field {key:?} is not an object")))
}

/// The array at `key`, created if absent or null.
fn array_field<'a>(obj: &'a mut Map<String, Value>, key: &str) -> Result<&'a mut Vec<Value>> {
    let slot = obj.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
        .ok_or_else(|| invalid(format!("field {key:?} is not an array")))
}

/// The labels of a config (for breadcrumbs), in key order.
pub fn config_labels(config: &[u8]) -> Result<BTreeMap<String, String>> {
    let doc: Value = serde_json::from_slice(config).map_err(|e| Error::Json {
        what: "image config".into(),
        source: e,
    })?;
    Ok(doc
        .pointer("/config/Labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"architecture":"amd64","zzz_unknown":{"keep":[1,2.5,"x"]},"config":{"Env":["PATH=/usr/bin","LANG=C"],"Cmd":["bash"],"Healthcheck":{"Test":["CMD","true"]},"OnBuild":null,"Labels":{"a":"1"}},"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]},"history":[{"created_by":"base"}]}"#;

    fn edit() -> ConfigEdit {
        ConfigEdit {
            layers: vec![AppendedLayer {
                diff_id: Digest::sha256(b"layer"),
                created_by: "graft append compat".into(),
                comment: None,
            }],
            runtime: RuntimeConfig {
                env: vec![
                    ("PATH".into(), "/opt/bin:/usr/bin".into()),
                    ("NEW".into(), "1".into()),
                ],
                labels: BTreeMap::from([("a".into(), "2".into())]),
                entrypoint: Some(vec!["/start.sh".into()]),
                exposed_ports: vec!["8888".into()],
                ..RuntimeConfig::default()
            },
            labels: BTreeMap::from([("crumb".into(), "x".into())]),
            created: Timestamp(1_700_000_000),
        }
    }

    #[test]
    fn keeps_unknown_fields_and_order() {
        let out = edit_config(BASE.as_bytes(), &edit()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with(r#"{"architecture":"amd64","zzz_unknown":{"keep":[1,2.5,"x"]},"config":{"Env":["PATH=/opt/bin:/usr/bin","LANG=C","NEW=1"],"Cmd":null,"Healthcheck":{"Test":["CMD","true"]},"OnBuild":null,"Labels":{"a":"2","crumb":"x"},"Entrypoint":["/start.sh"],"ExposedPorts":{"8888/tcp":{}}},"os":"linux""#), "{text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(v["history"][1]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["created"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn deterministic_and_merges() {
        assert_eq!(
            edit_config(BASE.as_bytes(), &edit()).unwrap(),
            edit_config(BASE.as_bytes(), &edit()).unwrap()
        );
    }

    #[test]
    fn rejects_non_object() {
        assert!(edit_config(b"[]", &edit()).is_err());
        assert!(edit_config(br#"{"rootfs":5}"#, &edit())
            .unwrap_err()
            .to_string()
            .contains("rootfs"));
    }
}
