//! Signing and provenance, cosign-compatible, with registry calls only.
//!
//! - [`keys`]: cosign key files (generate, encrypt, load both PEM labels, public keys).
//! - [`payload`], [`dsse`], [`bundle`]: the signed documents (simple-signing payloads, DSSE
//!   envelopes and in-toto statements, sigstore bundles v0.3).
//! - [`attach`]: storing signatures and attestations next to an image: cosign's `.sig`/`.att`
//!   tags (appending, never dropping others') and bundle referrers with the referrers
//!   tag-schema fallback.
//! - [`verify`]: checking them, with distinct failure kinds.
//! - [`keyless`]: keyless (Fulcio certificate + Rekor entry) checks against a trusted root.
//! - [`provenance`]: SLSA v1 provenance statements (written, and read back for rebuilds).
//!
//! Typical use (what `graft refresh --sign-key --provenance` does for each pushed manifest):
//! ```no_run
//! # async fn f(image: graft::reference::ImageRef, ep: graft::store::open::Endpoint,
//! #            subject: graft::oci::Descriptor, p: graft::sign::provenance::Provenance)
//! #            -> graft::Result<()> {
//! use graft::sign::{attach, keys::SigningKey, repo::Repo};
//! let key = SigningKey::load("cosign.key", b"password")?;
//! let repo = Repo::open(&image, &ep).await?;
//! attach::sign(&repo, &subject, &key, &attach::SignOptions::default()).await?;
//! let statement = p.statement(&repo.identity(), &subject.digest);
//! attach::attest(&repo, &subject, &key, &statement, &attach::AttestOptions::default()).await?;
//! # Ok(()) }
//! ```

pub mod attach;
pub mod bundle;
pub mod dsse;
pub mod keyless;
pub mod keys;
pub mod payload;
pub mod provenance;
pub mod repo;
pub mod verify;

pub use attach::{attest, sign, AttachReport, AttestOptions, Format, SignOptions};
pub use keyless::{Keyless, Matcher, TrustedRoot};
pub use keys::{PublicKey, SigningKey};
pub use provenance::{
    BuildBase, BuildProvenance, BuildSource, BuildValues, BuilderInfo, LibrarySource, Provenance,
    RefreshProvenance, ResourceDescriptor,
};
pub use repo::Repo;
pub use verify::{
    verify_attestations, verify_attestations_with, verify_signatures, verify_signatures_with,
    FailureKind, Verifier, VerifyFailure,
};

/// The full predicate type URI for a `--type` value: cosign's short names
/// (`slsaprovenance1`, `slsaprovenance02`, `slsaprovenance`, `spdx`, `spdxjson`, `cyclonedx`,
/// `vuln`, `openvex`, `custom`) or any URI.
pub fn predicate_type_uri(value: &str) -> Result<String, crate::Error> {
    Ok(match value {
        "slsaprovenance1" => attach::SLSA_PROVENANCE_V1.into(),
        "slsaprovenance" | "slsaprovenance02" => "https://slsa.dev/provenance/v0.2".into(),
        "spdx" | "spdxjson" => "https://spdx.dev/Document".into(),
        "cyclonedx" => "https://cyclonedx.org/bom".into(),
        "vuln" => "https://cosign.sigstore.dev/attestation/vuln/v1".into(),
        "openvex" => "https://openvex.dev/ns".into(),
        "custom" => "https://cosign.sigstore.dev/attestation/v1".into(),
        v if v.contains(':') => v.to_string(),
        v => {
            return Err(crate::Error::Unsupported(format!(
                "unknown predicate type {v:?}: use slsaprovenance1, slsaprovenance02, spdxjson, \
                 cyclonedx, vuln, openvex, custom, or a URI"
            )))
        }
    })
}
