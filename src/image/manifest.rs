//! New manifests and indexes derived from a base one: edited as ordered JSON values, so fields
//! graft does not own survive, then serialised deterministically. The results are documents
//! graft creates (new digests); the base documents are never rewritten.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::oci::{media_types as mt, Descriptor, Digest, RawManifest};

fn json_err(what: &str) -> impl FnOnce(serde_json::Error) -> Error + '_ {
    move |e| Error::Json {
        what: what.to_string(),
        source: e,
    }
}

fn descriptor_value(d: &Descriptor) -> Result<Value> {
    serde_json::to_value(d).map_err(json_err("descriptor"))
}

fn set_annotations(
    obj: &mut Map<String, Value>,
    annotations: &BTreeMap<String, String>,
    keep_existing: bool,
) -> Result<()> {
    if !keep_existing {
        obj.shift_remove("annotations");
    }
    if annotations.is_empty() {
        return Ok(());
    }
    let slot = obj.entry("annotations").or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    let map = slot.as_object_mut().ok_or_else(|| Error::Invalid {
        what: "manifest".into(),
        reason: "annotations is not an object".into(),
    })?;
    for (k, v) in annotations {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(())
}

fn finish(doc: &Value, media_type: &str) -> Result<RawManifest> {
    let bytes = serde_json::to_vec(doc).map_err(json_err("new manifest"))?;
    RawManifest::from_bytes(Bytes::from(bytes), Some(media_type))
}

/// The layer media type to use in a manifest of `manifest_type` for a layer built as
/// `layer_type` (OCI media types inside OCI manifests, Docker's inside Docker manifests:
/// never mixed).
pub fn layer_media_type_for(manifest_type: &str, layer_type: &str) -> Result<String> {
    if manifest_type != mt::DOCKER_MANIFEST {
        return Ok(layer_type.to_string());
    }
    match layer_type {
        mt::OCI_LAYER_GZIP | mt::DOCKER_LAYER_GZIP => Ok(mt::DOCKER_LAYER_GZIP.to_string()),
        mt::OCI_LAYER_TAR => Ok("application/vnd.docker.image.rootfs.diff.tar".to_string()),
        other => Err(Error::Unsupported(format!(
            "a {other} layer cannot be appended to a Docker schema 2 manifest; use gzip compression"
        ))),
    }
}

/// A new image manifest: `base` with its config replaced, `layers` appended and `annotations`
/// set (over the base's own annotations when `keep_existing`, else instead of them).
pub fn append_layers(
    base: &RawManifest,
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
    keep_existing: bool,
) -> Result<RawManifest> {
    if base.is_index() {
        return Err(Error::Invalid {
            what: format!("manifest {}", base.digest()),
            reason: "expected an image manifest, found an index".into(),
        });
    }
    let mut doc: Value = serde_json::from_slice(base.bytes()).map_err(json_err("base manifest"))?;
    let obj = doc.as_object_mut().ok_or_else(|| Error::Invalid {
        what: format!("manifest {}", base.digest()),
        reason: "not a JSON object".into(),
    })?;
    if !obj.contains_key("mediaType") {
        // umoci omits it; a manifest graft writes always names its type. Keep it near the top.
        let mut fresh = Map::new();
        for (k, v) in std::mem::take(obj) {
            fresh.insert(k.clone(), v);
            if k == "schemaVersion" {
                fresh.insert(
                    "mediaType".into(),
                    Value::String(base.media_type().to_string()),
                );
            }
        }
        fresh
            .entry("mediaType")
            .or_insert(Value::String(base.media_type().to_string()));
        *obj = fresh;
    }
    obj.insert("config".into(), descriptor_value(config)?);
    let list = obj.entry("layers").or_insert(Value::Array(Vec::new()));
    let list = list.as_array_mut().ok_or_else(|| Error::Invalid {
        what: format!("manifest {}", base.digest()),
        reason: "layers is not an array".into(),
    })?;
    for l in layers {
        list.push(descriptor_value(l)?);
    }
    set_annotations(obj, annotations, keep_existing)?;
    finish(&doc, base.media_type())
}

/// A new index: `base` with the entries in `replace` pointed at new manifests (platform and
/// entry annotations kept), the entries at the positions in `drop` removed, and `annotations`
/// set.
pub fn rebuild_index(
    base: &RawManifest,
    replace: &HashMap<Digest, Descriptor>,
    drop: &HashSet<usize>,
    annotations: &BTreeMap<String, String>,
    keep_existing: bool,
) -> Result<RawManifest> {
    let mut doc: Value = serde_json::from_slice(base.bytes()).map_err(json_err("base index"))?;
    let obj = doc.as_object_mut().ok_or_else(|| Error::Invalid {
        what: format!("index {}", base.digest()),
        reason: "not a JSON object".into(),
    })?;
    obj.entry("mediaType")
        .or_insert(Value::String(base.media_type().to_string()));
    let entries = obj
        .get_mut("manifests")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| Error::Invalid {
            what: format!("index {}", base.digest()),
            reason: "manifests is not an array".into(),
        })?;
    let mut kept = Vec::new();
    for (pos, mut e) in std::mem::take(entries).into_iter().enumerate() {
        if drop.contains(&pos) {
            continue;
        }
        let digest: Digest = e
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Invalid {
                what: format!("index {}", base.digest()),
                reason: "an entry has no digest".into(),
            })?
            .parse()?;
        if let Some(new) = replace.get(&digest) {
            let m = e.as_object_mut().ok_or_else(|| Error::Invalid {
                what: format!("index {}", base.digest()),
                reason: "an entry is not an object".into(),
            })?;
            m.insert("mediaType".into(), Value::String(new.media_type.clone()));
            m.insert("digest".into(), Value::String(new.digest.to_string()));
            m.insert("size".into(), Value::from(new.size));
        }
        kept.push(e);
    }
    *entries = kept;
    set_annotations(obj, annotations, keep_existing)?;
    finish(&doc, base.media_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str, size: u64) -> Descriptor {
        Descriptor::new(mt::OCI_LAYER_GZIP, Digest::sha256(s.as_bytes()), size)
    }

    #[test]
    fn appends_and_keeps_unknown_fields() {
        let cfg = Digest::sha256(b"c");
        let base = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{cfg}","size":1}},"layers":[],"x-keep":true}}"#,
            mt::OCI_CONFIG
        );
        let base = RawManifest::from_bytes(Bytes::from(base), None).unwrap();
        let new_cfg = Descriptor::new(mt::OCI_CONFIG, Digest::sha256(b"c2"), 2);
        let ann = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let m = append_layers(&base, &new_cfg, &[d("l", 3)], &ann, true).unwrap();
        let text = std::str::from_utf8(m.bytes()).unwrap();
        assert!(text.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config""#), "{text}");
        assert!(text.contains(r#""x-keep":true"#));
        assert_eq!(m.view().layers.len(), 1);
        assert_eq!(m.view().config.as_ref().unwrap().digest, new_cfg.digest);
        let again = append_layers(&base, &new_cfg, &[d("l", 3)], &ann, true).unwrap();
        assert_eq!(again.digest(), m.digest(), "deterministic");
    }

    #[test]
    fn docker_manifests_get_docker_layer_types() {
        assert_eq!(
            layer_media_type_for(mt::DOCKER_MANIFEST, mt::OCI_LAYER_GZIP).unwrap(),
            mt::DOCKER_LAYER_GZIP
        );
        assert!(layer_media_type_for(mt::DOCKER_MANIFEST, mt::OCI_LAYER_ZSTD).is_err());
        assert_eq!(
            layer_media_type_for(mt::OCI_MANIFEST, mt::OCI_LAYER_ZSTD).unwrap(),
            mt::OCI_LAYER_ZSTD
        );
    }

    #[test]
    fn rebuilds_index() {
        let a = Digest::sha256(b"a");
        let b = a.clone();
        let base = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{a}","size":1,"platform":{{"architecture":"amd64","os":"linux"}}}},{{"mediaType":"{}","digest":"{b}","size":1,"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
            mt::OCI_INDEX,
            mt::OCI_MANIFEST,
            mt::OCI_MANIFEST
        );
        let base = RawManifest::from_bytes(Bytes::from(base), None).unwrap();
        let new = Descriptor::new(mt::OCI_MANIFEST, Digest::sha256(b"a2"), 9);
        let idx = rebuild_index(
            &base,
            &HashMap::from([(a, new.clone())]),
            &HashSet::from([1]),
            &BTreeMap::new(),
            true,
        )
        .unwrap();
        let entries = &idx.view().manifests;
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].digest, new.digest);
        assert_eq!(entries[0].size, 9);
        assert_eq!(entries[0].platform.as_ref().unwrap().architecture, "amd64");
    }
}
