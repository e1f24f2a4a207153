//! DSSE envelopes and in-toto Statements.
//!
//! The signature of a DSSE envelope covers the pre-authentication encoding
//! `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, where `LEN` is the
//! byte length in ASCII decimal and `SP` one space (DSSE v1.0 protocol).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::oci::Digest;
use crate::sign::keys::{PublicKey, SigningKey};

/// `payloadType` of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// `_type` of an in-toto Statement v1.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// `_type` of the older in-toto Statement v0.1 (still read).
pub const STATEMENT_V01: &str = "https://in-toto.io/Statement/v0.1";

/// The DSSE pre-authentication encoding of `payload_type` and `body`.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// Key hint; cosign writes `""`.
    #[serde(default)]
    pub keyid: String,
    /// Base64 of the ASN.1 DER signature over the PAE.
    pub sig: String,
}

/// A DSSE envelope, serialised as cosign writes it in `.att` layers:
/// `{"payloadType":…,"payload":…,"signatures":[{"keyid":"","sig":…}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The payload's media type.
    pub payload_type: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    /// Signatures over the PAE.
    pub signatures: Vec<EnvelopeSignature>,
}

impl Envelope {
    /// Sign `body` of `payload_type` with `key` (keyid `""`, as cosign).
    pub fn sign(payload_type: &str, body: &[u8], key: &SigningKey) -> Envelope {
        let sig = key.sign(&pae(payload_type, body));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(body),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: B64.encode(sig),
            }],
        }
    }

    /// Compact JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("serialising an envelope cannot fail")
    }

    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        B64.decode(&self.payload)
            .map_err(|e| format!("payload is not valid base64: {e}"))
    }

    /// Whether any signature verifies with `key` over the PAE of the payload.
    pub fn verify(&self, key: &PublicKey) -> Result<bool, String> {
        let body = self.payload_bytes()?;
        let pae = pae(&self.payload_type, &body);
        Ok(self.signatures.iter().any(|s| {
            B64.decode(&s.sig)
                .map(|sig| key.verify(&pae, &sig))
                .unwrap_or(false)
        }))
    }
}

/// An in-toto Statement, kept as the exact bytes that are (or will be) signed.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The exact JSON bytes.
    pub bytes: Vec<u8>,
    /// The parsed document.
    pub value: Value,
}

impl Statement {
    /// A Statement v1 about one subject `name` with `digest`, serialised deterministically:
    /// `{"_type","subject":[{"name","digest":{ALG:HEX}}],"predicateType","predicate"}`; the
    /// predicate keeps its own key order.
    pub fn new(name: &str, digest: &Digest, predicate_type: &str, predicate: Value) -> Statement {
        Statement::with_subject_annotations(name, digest, None, predicate_type, predicate)
    }

    /// Like [`Statement::new`] with `annotations` on the subject (in-toto ResourceDescriptor
    /// `annotations`), as cosign v3 records `-a key=value` on image signatures.
    pub fn with_subject_annotations(
        name: &str,
        digest: &Digest,
        annotations: Option<&std::collections::BTreeMap<String, String>>,
        predicate_type: &str,
        predicate: Value,
    ) -> Statement {
        let mut digests = Map::new();
        digests.insert(
            digest.algorithm().as_str().to_string(),
            Value::String(digest.hex().to_string()),
        );
        let mut subject = Map::new();
        subject.insert("name".into(), Value::String(name.to_string()));
        subject.insert("digest".into(), Value::Object(digests));
        if let Some(a) = annotations.filter(|a| !a.is_empty()) {
            subject.insert(
                "annotations".into(),
                Value::Object(
                    a.iter()
                        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                        .collect(),
                ),
            );
        }
        let mut doc = Map::new();
        doc.insert("_type".into(), Value::String(STATEMENT_V1.into()));
        doc.insert("subject".into(), Value::Array(vec![Value::Object(subject)]));
        doc.insert(
            "predicateType".into(),
            Value::String(predicate_type.to_string()),
        );
        doc.insert("predicate".into(), predicate);
        let value = Value::Object(doc);
        let bytes = serde_json::to_vec(&value).expect("serialising a statement cannot fail");
        Statement { bytes, value }
    }

    /// Parse statement bytes (v1 or v0.1).
    pub fn parse(bytes: &[u8]) -> Result<Statement, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("statement is not JSON: {e}"))?;
        match value.get("_type").and_then(Value::as_str) {
            Some(STATEMENT_V1) | Some(STATEMENT_V01) => {}
            Some(t) => return Err(format!("unknown statement _type {t:?}")),
            None => return Err("the statement has no _type".into()),
        }
        if !value.get("subject").is_some_and(Value::is_array) {
            return Err("the statement has no subject list".into());
        }
        if value.get("predicateType").and_then(Value::as_str).is_none() {
            return Err("the statement has no predicateType".into());
        }
        Ok(Statement {
            bytes: bytes.to_vec(),
            value,
        })
    }

    /// `predicateType`.
    pub fn predicate_type(&self) -> &str {
        self.value
            .get("predicateType")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Whether a subject carries `digest`.
    pub fn has_subject(&self, digest: &Digest) -> bool {
        self.subject_digests().contains(digest)
    }

    /// Every digest named by a subject.
    pub fn subject_digests(&self) -> Vec<Digest> {
        let mut out = Vec::new();
        for s in self
            .value
            .get("subject")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for (alg, hex) in s
                .get("digest")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(d) = hex
                    .as_str()
                    .and_then(|h| format!("{alg}:{h}").parse::<Digest>().ok())
                {
                    out.push(d);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_spec_example() {
        // DSSE protocol.md test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn envelope_signs_and_verifies() {
        let k = SigningKey::generate();
        let st = Statement::new(
            "r",
            &Digest::sha256(b"i"),
            "https://x/y",
            serde_json::json!({"a":1}),
        );
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &st.bytes, &k);
        assert!(env.verify(&k.public_key()).unwrap());
        assert!(!env.verify(&SigningKey::generate().public_key()).unwrap());
        let bytes = String::from_utf8(env.to_bytes()).unwrap();
        assert!(bytes.starts_with(r#"{"payloadType":"application/vnd.in-toto+json","payload":""#));
        assert!(bytes.contains(r#""signatures":[{"keyid":"","sig":""#));
        let parsed = Statement::parse(&env.payload_bytes().unwrap()).unwrap();
        assert!(parsed.has_subject(&Digest::sha256(b"i")));
        assert_eq!(parsed.predicate_type(), "https://x/y");
        assert!(String::from_utf8(st.bytes)
            .unwrap()
            .starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"r","digest":{"sha256":""#));
    }
}
