//! Manifests kept as the exact bytes they arrived in, with a parsed read-only view.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::oci::descriptor::Descriptor;
use crate::oci::digest::Digest;
use crate::oci::media_types as mt;

/// A manifest or index: its exact bytes, media type and digest. graft never re-serialises
/// one of these; it moves the bytes as they are. The fields are set together by the
/// constructors only, so the digest is always that of the bytes and the view their parse.
#[derive(Debug, Clone)]
pub struct RawManifest {
    bytes: Bytes,
    media_type: String,
    digest: Digest,
    view: ManifestView,
}

/// The fields of a manifest or index graft reads. Unknown fields are ignored here but kept in
/// [`RawManifest::bytes`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestView {
    /// `schemaVersion`.
    #[serde(default)]
    pub schema_version: Option<u32>,
    /// `mediaType`, which may be absent (umoci omits it).
    #[serde(default)]
    pub media_type: Option<String>,
    /// `artifactType`.
    #[serde(default)]
    pub artifact_type: Option<String>,
    /// The config descriptor of an image manifest.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// The layers of an image manifest.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The entries of an index.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// The subject (OCI 1.1 referrers).
    #[serde(default)]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl RawManifest {
    /// Parse `bytes`, taking the media type from the document, else from `content_type`,
    /// else from its shape. The digest is computed here (sha256).
    pub fn from_bytes(bytes: Bytes, content_type: Option<&str>) -> Result<RawManifest> {
        let digest = Digest::sha256(&bytes);
        Self::with_digest(bytes, content_type, digest)
    }

    /// Parse `bytes` that are known to have `digest` (verified by the caller).
    pub fn with_digest(
        bytes: Bytes,
        content_type: Option<&str>,
        digest: Digest,
    ) -> Result<RawManifest> {
        let view: ManifestView = serde_json::from_slice(&bytes).map_err(|e| Error::Json {
            what: format!("manifest {digest}"),
            source: e,
        })?;
        if view.schema_version == Some(1) {
            return Err(Error::Invalid {
                what: format!("manifest {digest}"),
                reason: "Docker schema 1 manifests are not supported".into(),
            });
        }
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| mt::is_any_manifest(c));
        let media_type = match (&view.media_type, content_type) {
            (Some(m), _) if !m.is_empty() => m.clone(),
            (_, Some(c)) => c.to_string(),
            _ if !view.manifests.is_empty() => mt::OCI_INDEX.to_string(),
            _ if view.config.is_some() => mt::OCI_MANIFEST.to_string(),
            _ => {
                return Err(Error::Invalid {
                    what: format!("manifest {digest}"),
                    reason: "neither an image manifest (no config) nor an index (no manifests)"
                        .into(),
                })
            }
        };
        if mt::is_manifest(&media_type) && view.config.is_none() {
            return Err(Error::Invalid {
                what: format!("manifest {digest}"),
                reason: "image manifest has no config descriptor".into(),
            });
        }
        Ok(RawManifest {
            bytes,
            media_type,
            digest,
            view,
        })
    }

    /// Parse bytes fetched by `expected` digest, verifying them first.
    pub fn verified(
        bytes: Bytes,
        content_type: Option<&str>,
        expected: &Digest,
    ) -> Result<RawManifest> {
        expected.verify(&format!("manifest {expected}"), &bytes)?;
        Self::with_digest(bytes, content_type, expected.clone())
    }

    /// The exact bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The digest of the bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The media type (from the document, else the transport's Content-Type, else its shape).
    pub fn media_type(&self) -> &str {
        &self.media_type
    }

    /// The parsed view.
    pub fn view(&self) -> &ManifestView {
        &self.view
    }

    /// Whether this is an index (OCI index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        mt::is_index(&self.media_type)
            || (!self.view.manifests.is_empty() && self.view.config.is_none())
    }

    /// A descriptor pointing at this manifest.
    pub fn descriptor(&self) -> Descriptor {
        let mut d = Descriptor::new(
            self.media_type.clone(),
            self.digest.clone(),
            self.bytes.len() as u64,
        );
        d.artifact_type = self.view.artifact_type.clone();
        d
    }

    /// The blobs an image manifest references: config first, then layers.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        self.view
            .config
            .iter()
            .chain(self.view.layers.iter())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_manifest_without_media_type() {
        let doc = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#;
        let m = RawManifest::from_bytes(Bytes::from_static(doc), None).unwrap();
        assert_eq!(m.media_type, mt::OCI_MANIFEST);
        assert_eq!(m.blobs().len(), 1);
        assert_eq!(&m.bytes[..], doc);
    }

    #[test]
    fn rejects_schema1_and_garbage() {
        assert!(
            RawManifest::from_bytes(Bytes::from_static(br#"{"schemaVersion":1}"#), None).is_err()
        );
        let e = RawManifest::from_bytes(Bytes::from_static(b"{"), None).unwrap_err();
        assert!(matches!(e, Error::Json { .. }));
    }
}
