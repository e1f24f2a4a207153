//! `graft verify (--key PUB | --certificate-identity[-regexp] ID
//! --certificate-oidc-issuer[-regexp] ISS --trusted-root FILE) [--recursive] REF`.

use std::path::PathBuf;

use clap::Args;

use graft::ops::sign::{load_verifier, verify_all, VerifyBy};
use graft::reference::ImageRef;
use graft::sign::VerifyFailure;

use super::output::{outln, print_error};
use super::{print_json, GlobalArgs, Output};

/// How to verify: a key, or keyless (shared by `verify` and `verify-attestation`).
#[derive(Debug, Args)]
pub struct VerifyWith {
    /// Public key: a PEM file or env://VAR. Alternative to the keyless flags.
    #[arg(long)]
    pub key: Option<String>,
    /// Keyless: the certificate identity (SAN email or URI) the signer must have.
    #[arg(long, value_name = "ID")]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression the certificate identity must match (unanchored, as in
    /// cosign: anchor it with ^ and $).
    #[arg(long, value_name = "RE")]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer the certificate must name.
    #[arg(long, value_name = "ISS")]
    pub certificate_oidc_issuer: Option<String>,
    /// Keyless: a regular expression the certificate's OIDC issuer must match.
    #[arg(long, value_name = "RE")]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// Keyless: the sigstore trusted root (trusted_root.json: Fulcio CAs, Rekor and CT log
    /// keys). Required: graft never fetches trust roots.
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
    /// Keyless: accept certificates without a verifiable SCT (a private Fulcio without a CT
    /// log), as cosign's flag of the same name.
    #[arg(long)]
    pub insecure_ignore_sct: bool,
}

impl VerifyWith {
    /// The library's form of the flags.
    pub fn by(&self) -> VerifyBy {
        VerifyBy {
            key: self.key.clone(),
            identity: self.certificate_identity.clone(),
            identity_regexp: self.certificate_identity_regexp.clone(),
            issuer: self.certificate_oidc_issuer.clone(),
            issuer_regexp: self.certificate_oidc_issuer_regexp.clone(),
            trusted_root: self.trusted_root.clone(),
            ignore_sct: self.insecure_ignore_sct,
        }
    }
}

/// Arguments of `graft verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A key or keyless.
    #[command(flatten)]
    pub with: VerifyWith,
    /// Also verify every manifest listed by an index (each must be signed).
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Image: docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub reference: String,
}

/// Run `graft verify`: exit 0 only when every digest asked about carries a valid signature
/// by the key.
pub async fn run(args: VerifyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let by = args.with.by();
    let loaded = load_verifier(&by)?;
    let reference: ImageRef = args.reference.parse()?;
    let ep = global.registry.endpoint(None)?;
    let outcomes = verify_all(&reference, args.recursive, loaded.verifier(), &ep).await?;
    report(
        &args.reference,
        &loaded.describe(&by),
        "signatures",
        outcomes,
        global,
        |v| &v.payload,
    )
}

/// Print what a verification found (JSON, or the verified documents on stdout and a summary on
/// stderr) and fail with the first failure, listing the others. Shared by `verify` and
/// `verify-attestation`; `by` says how (`key PATH`, `identity … from issuer …`), `what` names
/// the verified items (`signatures`, `attestations`).
pub fn report<T: serde::Serialize>(
    reference: &str,
    by: &str,
    what: &str,
    outcomes: Vec<graft::Result<Vec<T>>>,
    global: &GlobalArgs,
    document: impl Fn(&T) -> &serde_json::Value,
) -> anyhow::Result<()> {
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for o in outcomes {
        match o {
            Ok(v) => results.push(v),
            Err(e) => failures.push(e),
        }
    }
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "reference": reference,
            "verified": failures.is_empty(),
            what: results.iter().flatten().collect::<Vec<_>>(),
            "failures": failures.iter().map(|e| match verify_failure(e) {
                Some(f) => serde_json::to_value(f).unwrap_or_default(),
                None => serde_json::json!({"error": e.to_string()}),
            }).collect::<Vec<_>>(),
        }))?,
        Output::Text => {
            for v in results.iter().flatten() {
                outln!("{}", serde_json::to_string(document(v))?)?;
            }
            if !global.quiet && failures.is_empty() {
                eprintln!(
                    "Verified {} digest(s) of {reference} with {by}: {} valid {what}",
                    results.len(),
                    results.iter().map(Vec::len).sum::<usize>()
                );
            }
        }
    }
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(()),
        Some(first) => {
            for more in failures {
                print_error(&more.into());
            }
            Err(first.into())
        }
    }
}

/// The verification failure `e` is, if it is one (and not, say, a registry error).
fn verify_failure(e: &graft::Error) -> Option<&VerifyFailure> {
    match e {
        graft::Error::Verify(f) => f.downcast_ref(),
        _ => None,
    }
}
