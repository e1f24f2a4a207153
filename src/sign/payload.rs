//! The cosign "simple signing" payload: what a `.sig` layer signs.
//!
//! `{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},"optional":null}`
//! with `optional` holding the `-a key=value` annotations when there are any. Parsing is as
//! strict as containers/image's (`signature/internal/sigstore_payload.go`): exactly these
//! fields in `critical`, `optional` null or an object whose `creator` is a string and whose
//! `timestamp` is an integer.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::oci::Digest;

/// `critical.type` of a cosign image signature.
pub const SIMPLE_SIGNING_TYPE: &str = "cosign container image signature";

/// A simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SimpleSigning {
    /// `critical.identity.docker-reference`: the repository the signer meant.
    pub docker_reference: String,
    /// `critical.image.docker-manifest-digest`: the signed manifest.
    pub digest: Digest,
    /// `optional` (annotations); `None` serialises as `null`, as cosign writes it.
    pub optional: Option<BTreeMap<String, Value>>,
}

impl SimpleSigning {
    /// A payload for `digest` in `docker_reference` with string annotations.
    pub fn new(
        docker_reference: &str,
        digest: &Digest,
        annotations: &BTreeMap<String, String>,
    ) -> SimpleSigning {
        SimpleSigning {
            docker_reference: docker_reference.to_string(),
            digest: digest.clone(),
            optional: (!annotations.is_empty()).then(|| {
                annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect()
            }),
        }
    }

    /// The exact bytes graft signs: compact JSON, keys in cosign's order (Go sorts map keys).
    pub fn to_bytes(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Identity<'a> {
            #[serde(rename = "docker-reference")]
            docker_reference: &'a str,
        }
        #[derive(Serialize)]
        struct Image {
            #[serde(rename = "docker-manifest-digest")]
            digest: String,
        }
        #[derive(Serialize)]
        struct Critical<'a> {
            identity: Identity<'a>,
            image: Image,
            #[serde(rename = "type")]
            kind: &'a str,
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            critical: Critical<'a>,
            optional: &'a Option<BTreeMap<String, Value>>,
        }
        serde_json::to_vec(&Doc {
            critical: Critical {
                identity: Identity {
                    docker_reference: &self.docker_reference,
                },
                image: Image {
                    digest: self.digest.to_string(),
                },
                kind: SIMPLE_SIGNING_TYPE,
            },
            optional: &self.optional,
        })
        .expect("serialising a payload cannot fail")
    }

    /// Parse `bytes` as strictly as containers/image does; the error says which field is wrong.
    pub fn parse(bytes: &[u8]) -> Result<SimpleSigning, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let top = exact_fields(&v, "the payload", &["critical", "optional"])?;
        let optional = match &top["optional"] {
            Value::Null => None,
            Value::Object(m) => {
                if let Some(c) = m.get("creator") {
                    if !c.is_string() {
                        return Err("optional.creator is not a string".into());
                    }
                }
                if let Some(t) = m.get("timestamp") {
                    if t.as_i64().is_none() {
                        return Err("optional.timestamp is not an integer".into());
                    }
                }
                Some(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            _ => return Err("optional is neither null nor an object".into()),
        };
        let critical = exact_fields(top["critical"], "critical", &["type", "image", "identity"])?;
        match critical["type"].as_str() {
            Some(SIMPLE_SIGNING_TYPE) => {}
            Some(t) => return Err(format!("unrecognized signature type {t:?}")),
            None => return Err("critical.type is not a string".into()),
        }
        let image = exact_fields(
            critical["image"],
            "critical.image",
            &["docker-manifest-digest"],
        )?;
        let digest_str = image["docker-manifest-digest"]
            .as_str()
            .ok_or("critical.image.docker-manifest-digest is not a string")?;
        let digest: Digest = digest_str
            .parse()
            .map_err(|e| format!("invalid docker-manifest-digest: {e}"))?;
        let identity = exact_fields(
            critical["identity"],
            "critical.identity",
            &["docker-reference"],
        )?;
        let docker_reference = identity["docker-reference"]
            .as_str()
            .ok_or("critical.identity.docker-reference is not a string")?
            .to_string();
        Ok(SimpleSigning {
            docker_reference,
            digest,
            optional,
        })
    }
}

/// `v` must be an object with exactly `fields`; returns them by name.
fn exact_fields<'a>(
    v: &'a Value,
    what: &str,
    fields: &[&'static str],
) -> Result<BTreeMap<&'static str, &'a Value>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{what} is not a JSON object"))?;
    let mut out = BTreeMap::new();
    for f in fields {
        let val = obj
            .get(*f)
            .ok_or_else(|| format!("{what} has no field {f:?}"))?;
        out.insert(*f, val);
    }
    if let Some(extra) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(format!("{what} has an unexpected field {extra:?}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_cosign_bytes() {
        let d = Digest::sha256(b"x");
        let p = SimpleSigning::new("localhost:5000/sci/astro", &d, &BTreeMap::new());
        assert_eq!(
            String::from_utf8(p.to_bytes()).unwrap(),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"localhost:5000/sci/astro"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        let mut a = BTreeMap::new();
        a.insert("z".to_string(), "1".to_string());
        a.insert("a".to_string(), "2".to_string());
        let p = SimpleSigning::new("r", &d, &a);
        let s = String::from_utf8(p.to_bytes()).unwrap();
        assert!(s.ends_with(r#""optional":{"a":"2","z":"1"}}"#), "{s}");
        assert_eq!(SimpleSigning::parse(s.as_bytes()).unwrap(), p);
    }

    #[test]
    fn strict_parse() {
        let d = Digest::sha256(b"x");
        let ok = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"r"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
        );
        assert!(SimpleSigning::parse(ok.as_bytes()).is_ok());
        let extra = ok.replace(r#""optional":null"#, r#""optional":null,"x":1"#);
        assert!(SimpleSigning::parse(extra.as_bytes())
            .unwrap_err()
            .contains("\"x\""));
        let wrong = ok.replace("cosign container image signature", "other");
        assert!(SimpleSigning::parse(wrong.as_bytes())
            .unwrap_err()
            .contains("other"));
        let ts = ok.replace(r#""optional":null"#, r#""optional":{"timestamp":"5"}"#);
        assert!(SimpleSigning::parse(ts.as_bytes())
            .unwrap_err()
            .contains("timestamp"));
    }
}
