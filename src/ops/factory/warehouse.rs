//! `graft factory warehouses`: one Kargo Warehouse per base image and per external image, with
//! the fields of the Warehouse CRD vendored in testdata/kargo/ (Kargo at commit 01a4dbf):
//!
//! - a base follows one tag by digest: `imageSelectionStrategy: Digest`, `constraint: TAG`
//!   (the CRD requires `constraint` for Digest; `semverConstraint` is deprecated);
//! - an external image: its strategy, and its allowTags as `allowTagsRegex: [RE]` (the CRD
//!   deprecates `allowTags` in favour of that list);
//! - `strictSemvers: true` and `interval: 5m0s` (required by the schema; Kargo's defaults).
//!
//! The output is deterministic: Warehouses sorted by name, fields in one fixed order.

use serde_json::{json, Value};

use crate::error::{Error, Result};

use super::state::{status, StateDir};
use super::Strategy;

/// One Warehouse.
#[derive(Debug, Clone)]
pub struct Warehouse {
    /// Its name (the base's or the external image's).
    pub name: String,
    /// The resource (JSON, rendered as YAML by the caller).
    pub resource: Value,
}

/// The Warehouses for the state in `dir`, sorted by name; `namespace` goes into metadata.
pub fn warehouses(dir: &StateDir, namespace: Option<&str>) -> Result<Vec<Warehouse>> {
    let state = dir.load()?;
    let mut out: Vec<Warehouse> = Vec::new();
    for (name, b) in state.bases.iter().filter(|(_, b)| b.removed_at.is_none()) {
        let mut image = serde_json::Map::new();
        image.insert("repoURL".into(), json!(b.repo_url));
        match &b.tag {
            Some(tag) => {
                image.insert("imageSelectionStrategy".into(), json!("Digest"));
                image.insert("constraint".into(), json!(tag));
            }
            None => {
                // Pinned by digest: nothing to follow.
                continue;
            }
        }
        image.insert("strictSemvers".into(), json!(true));
        out.push(warehouse(name, namespace, image));
    }
    for (name, s) in state
        .images
        .iter()
        .filter(|(_, s)| s.removed_at.is_none() && s.discovery_status == status::EXTERNAL)
    {
        let repo = s.repo_url.clone().ok_or_else(|| Error::Input {
            what: format!("state of {name}"),
            reason: "no repoURL: run graft factory sync".into(),
        })?;
        let strategy = Strategy::parse(s.image_selection_strategy.as_deref().unwrap_or("SemVer"))
            .unwrap_or(Strategy::SemVer);
        let mut image = serde_json::Map::new();
        image.insert("repoURL".into(), json!(repo));
        image.insert("imageSelectionStrategy".into(), json!(strategy.as_str()));
        match strategy {
            Strategy::Digest => {
                let tag = s
                    .allow_tags
                    .as_deref()
                    .and_then(super::exact_tag)
                    .ok_or_else(|| Error::Input {
                        what: format!("state of {name}"),
                        reason: "the Digest strategy needs allowTags `^TAG$`".into(),
                    })?;
                image.insert("constraint".into(), json!(tag));
            }
            _ => {
                if let Some(re) = &s.allow_tags {
                    image.insert("allowTagsRegex".into(), json!([re]));
                }
            }
        }
        image.insert("strictSemvers".into(), json!(true));
        if out.iter().any(|w| &w.name == name) {
            return Err(Error::Input {
                what: format!("Warehouse {name}"),
                reason: "an external image and a base image have this name: rename the image in images.yaml".into(),
            });
        }
        out.push(warehouse(name, namespace, image));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn warehouse(
    name: &str,
    namespace: Option<&str>,
    image: serde_json::Map<String, Value>,
) -> Warehouse {
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(name));
    if let Some(ns) = namespace {
        metadata.insert("namespace".into(), json!(ns));
    }
    Warehouse {
        name: name.to_string(),
        resource: json!({
            "apiVersion": "kargo.akuity.io/v1alpha1",
            "kind": "Warehouse",
            "metadata": metadata,
            "spec": {
                "interval": "5m0s",
                "subscriptions": [{"image": image}],
            },
        }),
    }
}

/// A Warehouse as YAML (keys in the order built).
pub fn to_yaml(w: &Warehouse) -> Result<String> {
    serde_yaml_ng::to_string(&w.resource).map_err(|e| Error::internal("rendering a Warehouse", e))
}
