//! Sigstore bundles (v0.3, `application/vnd.dev.sigstore.bundle.v0.3+json`), key-based.
//!
//! graft writes `verificationMaterial.publicKey.hint` (base64 SHA-256 of the SPKI DER) and no
//! transparency-log entry: there is no Rekor on an air-gapped research platform, so a verifier
//! that insists on one (e.g. `cosign verify` without `--insecure-ignore-tlog=true`) refuses
//! these bundles. The content is a DSSE envelope; bundles with a `messageSignature` are read too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::sign::dsse::{Envelope, EnvelopeSignature};
use crate::sign::keys::PublicKey;

/// Media type (and OCI `artifactType`) of a v0.3 bundle.
pub const BUNDLE_V03_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// What a bundle signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleContent {
    /// A DSSE envelope (an in-toto statement).
    Dsse(Envelope),
    /// A signature over an artifact known by its SHA-256 digest.
    MessageSignature {
        /// The artifact's SHA-256.
        digest: Vec<u8>,
        /// ASN.1 DER signature.
        signature: Vec<u8>,
    },
}

/// A parsed or new bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// `verificationMaterial.publicKey.hint`, if the bundle names a key.
    pub hint: Option<String>,
    /// The signed content.
    pub content: BundleContent,
}

impl Bundle {
    /// A bundle carrying `envelope`, naming `key` by its hint.
    pub fn dsse(envelope: Envelope, key: &PublicKey) -> Bundle {
        Bundle {
            hint: Some(key.hint()),
            content: BundleContent::Dsse(envelope),
        }
    }

    /// Compact protobuf-JSON bytes (empty fields omitted), deterministic.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut vm = Map::new();
        if let Some(h) = &self.hint {
            vm.insert("publicKey".into(), json!({ "hint": h }));
        }
        let mut doc = Map::new();
        doc.insert("mediaType".into(), json!(BUNDLE_V03_MEDIA_TYPE));
        doc.insert("verificationMaterial".into(), Value::Object(vm));
        match &self.content {
            BundleContent::Dsse(env) => {
                let sigs: Vec<Value> = env
                    .signatures
                    .iter()
                    .map(|s| {
                        let mut m = Map::new();
                        m.insert("sig".into(), json!(s.sig));
                        if !s.keyid.is_empty() {
                            m.insert("keyid".into(), json!(s.keyid));
                        }
                        Value::Object(m)
                    })
                    .collect();
                doc.insert(
                    "dsseEnvelope".into(),
                    json!({
                        "payload": env.payload,
                        "payloadType": env.payload_type,
                        "signatures": sigs,
                    }),
                );
            }
            BundleContent::MessageSignature { digest, signature } => {
                doc.insert(
                    "messageSignature".into(),
                    json!({
                        "messageDigest": {"algorithm": "SHA2_256", "digest": B64.encode(digest)},
                        "signature": B64.encode(signature),
                    }),
                );
            }
        }
        serde_json::to_vec(&Value::Object(doc)).expect("serialising a bundle cannot fail")
    }

    /// Parse a bundle (v0.1 to v0.3 media types); the error names the bad field.
    pub fn parse(bytes: &[u8]) -> Result<Bundle, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let mt = v.get("mediaType").and_then(Value::as_str).unwrap_or("");
        if !mt.starts_with("application/vnd.dev.sigstore.bundle") {
            return Err(format!("mediaType {mt:?} is not a sigstore bundle"));
        }
        let hint = v
            .pointer("/verificationMaterial/publicKey/hint")
            .and_then(Value::as_str)
            .map(str::to_string);
        let b64 = |p: &str| -> Result<Vec<u8>, String> {
            let s = v
                .pointer(p)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{p} is missing"))?;
            B64.decode(s).map_err(|e| format!("{p} is not base64: {e}"))
        };
        let content = if let Some(env) = v.get("dsseEnvelope") {
            let payload_type = env
                .get("payloadType")
                .and_then(Value::as_str)
                .ok_or("dsseEnvelope.payloadType is missing")?
                .to_string();
            let payload = env
                .get("payload")
                .and_then(Value::as_str)
                .ok_or("dsseEnvelope.payload is missing")?
                .to_string();
            let signatures = env
                .get("signatures")
                .and_then(Value::as_array)
                .ok_or("dsseEnvelope.signatures is missing")?
                .iter()
                .map(|s| EnvelopeSignature {
                    keyid: s
                        .get("keyid")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    sig: s
                        .get("sig")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                })
                .collect();
            BundleContent::Dsse(Envelope {
                payload_type,
                payload,
                signatures,
            })
        } else if v.get("messageSignature").is_some() {
            let alg = v
                .pointer("/messageSignature/messageDigest/algorithm")
                .and_then(Value::as_str)
                .unwrap_or("");
            if alg != "SHA2_256" {
                return Err(format!(
                    "messageSignature digest algorithm {alg:?} is not SHA2_256"
                ));
            }
            BundleContent::MessageSignature {
                digest: b64("/messageSignature/messageDigest/digest")?,
                signature: b64("/messageSignature/signature")?,
            }
        } else {
            return Err("neither dsseEnvelope nor messageSignature".into());
        };
        Ok(Bundle { hint, content })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::keys::SigningKey;

    #[test]
    fn round_trip() {
        let k = SigningKey::generate();
        let env = Envelope::sign("application/vnd.in-toto+json", b"{}", &k);
        let b = Bundle::dsse(env, &k.public_key());
        let bytes = b.to_bytes();
        let s = String::from_utf8(bytes.clone()).unwrap();
        assert!(s.starts_with(r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":""#), "{s}");
        assert!(!s.contains("tlogEntries"));
        assert_eq!(Bundle::parse(&bytes).unwrap(), b);
    }

    #[test]
    fn reads_cosign_made_bundle() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/interop/attestations/cosign/oci-attestation.sigstore.json"
        );
        let bytes = std::fs::read(path).expect("interop bundle");
        let b = Bundle::parse(&bytes).unwrap();
        assert!(matches!(b.content, BundleContent::Dsse(_)));
        assert_eq!(b.hint, None);
    }
}
