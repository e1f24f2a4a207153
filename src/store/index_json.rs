//! The top-level `index.json` of OCI layouts and archives: reading its entries, picking one
//! by tag, and editing it while keeping what graft does not touch.
//!
//! graft reads the entries as descriptors, but edits the document as ordered JSON, so unknown
//! top-level fields, unknown entry fields and the order of entries survive a tag being set.
//! Entries are named by the [`REF_NAME`] annotation.

use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::oci::{media_types as mt, Descriptor, Digest};

/// The file name of the index, at the root of a layout or archive.
pub const INDEX_FILE: &str = "index.json";

/// The annotation naming an `index.json` entry (its "tag").
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Parse the `manifests` of an `index.json`; `what` names the file in errors.
pub(crate) fn parse_index(bytes: &[u8], what: &str) -> Result<Vec<Descriptor>> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct IndexDoc {
        #[serde(default)]
        schema_version: Option<u64>,
        #[serde(default)]
        manifests: Option<Vec<Descriptor>>,
    }
    let doc: IndexDoc = serde_json::from_slice(bytes).map_err(|e| {
        bad_entry_digest(bytes, what).unwrap_or_else(|| Error::Json {
            what: what.to_string(),
            source: e,
        })
    })?;
    if let Some(v) = doc.schema_version {
        if v != 2 {
            return Err(Error::Invalid {
                what: what.to_string(),
                reason: format!("schemaVersion is {v}, expected 2"),
            });
        }
    }
    Ok(doc.manifests.unwrap_or_default())
}

/// When an `index.json` failed to parse: the error for its first entry with a malformed
/// digest (an [`Error::InvalidDigest`] naming the file and the entry), if that is the reason.
/// A bad digest is bad input, not broken JSON.
fn bad_entry_digest(bytes: &[u8], what: &str) -> Option<Error> {
    let doc: Value = serde_json::from_slice(bytes).ok()?;
    let entries = doc.get("manifests")?.as_array()?;
    entries.iter().enumerate().find_map(|(i, entry)| {
        let digest = entry.get("digest")?.as_str()?;
        let err = digest.parse::<Digest>().err()?;
        let tag = entry_ref_name(entry)
            .map(|t| format!(" (tag {t:?})"))
            .unwrap_or_default();
        Some(err.context(format!("reading entry {i}{tag} of the manifests in {what}")))
    })
}

/// Pick the entry named `tag`, or the only entry. `what` names the layout or archive.
pub(crate) fn resolve_in(
    entries: &[Descriptor],
    tag: Option<&str>,
    what: &str,
) -> Result<Descriptor> {
    if let Some(t) = tag {
        return entries
            .iter()
            .find(|d| d.annotation(REF_NAME) == Some(t))
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("tag {t:?} in {what}"),
                detail: Some(describe_entries(entries)),
            });
    }
    match entries {
        [only] => Ok(only.clone()),
        [] => Err(Error::NotFound {
            what: format!("image in {what}"),
            detail: Some("index.json lists no images".into()),
        }),
        _ => Err(Error::NotFound {
            what: format!("untagged image in {what}"),
            detail: Some(format!(
                "{} images are listed, name one with :TAG; {}",
                entries.len(),
                describe_entries(entries)
            )),
        }),
    }
}

/// "tags: a, b (and 1 untagged entry)" / "it has no tags".
fn describe_entries(entries: &[Descriptor]) -> String {
    let tags: Vec<&str> = entries
        .iter()
        .filter_map(|d| d.annotation(REF_NAME))
        .collect();
    let untagged = entries.len() - tags.len();
    let mut s = if tags.is_empty() {
        "it has no tags".to_string()
    } else {
        format!("tags: {}", tags.join(", "))
    };
    if untagged > 0 {
        let plural = if untagged == 1 { "entry" } else { "entries" };
        s.push_str(&format!(" ({untagged} untagged {plural})"));
    }
    s
}

/// The `index.json` entry for `desc` named `tag`: `desc` with its `ref.name` annotation set to
/// `tag` (or removed).
pub(crate) fn index_entry(desc: &Descriptor, tag: Option<&str>) -> Result<Value> {
    let mut entry = desc.clone();
    let mut annotations = entry.annotations.take().unwrap_or_default();
    annotations.remove(REF_NAME);
    if let Some(t) = tag {
        annotations.insert(REF_NAME.to_string(), t.to_string());
    }
    entry.annotations = (!annotations.is_empty()).then_some(annotations);
    serde_json::to_value(&entry).map_err(|e| Error::Json {
        what: format!("index entry for {}", desc.digest),
        source: e,
    })
}

/// Record `entry` (from [`index_entry`]) in the `manifests` of an index document, as
/// [`crate::store::layout::Layout::set_tag`] describes: with a tag, the entry holding it is
/// replaced in place (any other holder removed) or the entry appended; without one, it is
/// appended unless an entry with `digest` is already listed.
pub(crate) fn set_index_entry(
    manifests: &mut Vec<Value>,
    entry: Value,
    digest: &Digest,
    tag: Option<&str>,
) {
    match tag {
        Some(t) => {
            let holders: Vec<usize> = manifests
                .iter()
                .enumerate()
                .filter(|(_, v)| entry_ref_name(v) == Some(t))
                .map(|(i, _)| i)
                .collect();
            match holders.split_first() {
                None => manifests.push(entry),
                Some((&first, rest)) => {
                    manifests[first] = entry;
                    for &i in rest.iter().rev() {
                        manifests.remove(i);
                    }
                }
            }
        }
        None => {
            if !lists(manifests, digest) {
                manifests.push(entry);
            }
        }
    }
}

/// Remove from the `manifests` of an index document every entry of `digest` that is
/// untagged or whose name `named` accepts (`graft delete` on a layout: the entries a
/// registry's delete of the digest would take). Returns the removed entries' names (`None`
/// for an untagged one), in document order; the other entries keep their order.
pub(crate) fn remove_index_entries(
    manifests: &mut Vec<Value>,
    digest: &Digest,
    named: impl Fn(&str) -> bool,
) -> Vec<Option<String>> {
    let digest = digest.to_string();
    let mut removed = Vec::new();
    manifests.retain(|v| {
        if entry_digest(v) != Some(digest.as_str()) {
            return true;
        }
        match entry_ref_name(v) {
            None => {
                removed.push(None);
                false
            }
            Some(n) if named(n) => {
                removed.push(Some(n.to_string()));
                false
            }
            Some(_) => true,
        }
    });
    removed
}

/// Parse `index.json` as an ordered JSON object, for editing; `what` names the file.
pub(crate) fn parse_index_doc(bytes: &[u8], what: &str) -> Result<Map<String, Value>> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: what.to_string(),
        source: e,
    })?;
    match doc {
        Value::Object(doc) => Ok(doc),
        _ => Err(Error::Invalid {
            what: what.to_string(),
            reason: "index.json is not a JSON object".into(),
        }),
    }
}

/// The bytes of an edited document, its header completed by [`with_index_header`]; `what`
/// names the file.
pub(crate) fn index_doc_bytes(doc: Map<String, Value>, what: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(&Value::Object(with_index_header(doc))).map_err(|e| Error::Json {
        what: what.to_string(),
        source: e,
    })
}

/// An index without entries.
pub(crate) fn empty_index_bytes() -> Vec<u8> {
    let doc = with_index_header(Map::new());
    serde_json::to_vec(&Value::Object(doc)).expect("serialising a JSON value cannot fail")
}

/// Make sure the document has `schemaVersion`, `mediaType` and `manifests`. If one is
/// missing, it is added, with `schemaVersion` and `mediaType` moved to the front; the other
/// keys keep their order.
pub(crate) fn with_index_header(doc: Map<String, Value>) -> Map<String, Value> {
    if doc.contains_key("schemaVersion")
        && doc.contains_key("mediaType")
        && doc.contains_key("manifests")
    {
        return doc;
    }
    let mut out = Map::new();
    let version = doc.get("schemaVersion").cloned().unwrap_or(Value::from(2));
    out.insert("schemaVersion".into(), version);
    if !doc.contains_key("mediaType") {
        out.insert("mediaType".into(), Value::from(mt::OCI_INDEX));
    }
    let had_manifests = doc.contains_key("manifests");
    out.extend(doc.into_iter().filter(|(k, _)| k != "schemaVersion"));
    if !had_manifests {
        out.insert("manifests".into(), Value::Array(Vec::new()));
    }
    out
}

/// The `manifests` array of the document (created if missing or null); `path` names the file.
pub(crate) fn manifests_mut<'a>(
    doc: &'a mut Map<String, Value>,
    path: &Path,
) -> Result<&'a mut Vec<Value>> {
    let v = doc
        .entry("manifests")
        .or_insert_with(|| Value::Array(Vec::new()));
    if v.is_null() {
        *v = Value::Array(Vec::new());
    }
    v.as_array_mut().ok_or_else(|| Error::Invalid {
        what: path.display().to_string(),
        reason: "\"manifests\" is not an array".into(),
    })
}

/// The digest of the entry of the document named `tag`.
pub(crate) fn tag_digest(doc: &Map<String, Value>, tag: &str) -> Option<Digest> {
    let manifests = doc.get("manifests")?.as_array()?;
    let entry = manifests.iter().find(|v| entry_ref_name(v) == Some(tag))?;
    entry_digest(entry)?.parse().ok()
}

/// Whether the document lists an entry with `digest`.
pub(crate) fn lists_digest(doc: &Map<String, Value>, digest: &Digest) -> bool {
    doc.get("manifests")
        .and_then(Value::as_array)
        .is_some_and(|m| lists(m, digest))
}

fn lists(manifests: &[Value], digest: &Digest) -> bool {
    let digest = digest.to_string();
    manifests.iter().any(|v| entry_digest(v) == Some(&digest))
}

fn entry_ref_name(v: &Value) -> Option<&str> {
    v.get("annotations")?.get(REF_NAME)?.as_str()
}

fn entry_digest(v: &Value) -> Option<&str> {
    v.get("digest")?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_entry_digest_is_a_bad_digest() {
        let good = Digest::sha256(b"x");
        let doc = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{m}","digest":"{good}","size":1}},{{"mediaType":"{m}","digest":"sha256:xyz","size":1,"annotations":{{"{REF_NAME}":"v1"}}}}]}}"#,
            m = mt::OCI_MANIFEST
        );
        let err = parse_index(doc.as_bytes(), "/l/index.json").unwrap_err();
        assert!(err.is_usage(), "{err:?}");
        assert!(matches!(err.root(), Error::InvalidDigest { input, .. } if input == "sha256:xyz"));
        let text = err.to_string();
        assert!(
            text.contains("entry 1 (tag \"v1\")") && text.contains("/l/index.json"),
            "{text}"
        );

        // Other damage stays a JSON error, with its position.
        let err = parse_index(br#"{"manifests":[{"digest":5}]}"#, "i").unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err:?}");
        let err = parse_index(b"{", "i").unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err:?}");
    }
}
