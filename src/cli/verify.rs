//! `graft verify --key PUB [--recursive] REF`.

use clap::Args;

use graft::ops::sign::verify_all;
use graft::reference::ImageRef;
use graft::sign::{PublicKey, VerifyFailure};

use super::output::{outln, print_error};
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Public key: a PEM file or env://VAR.
    #[arg(long)]
    pub key: String,
    /// Also verify every manifest listed by an index (each must be signed).
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Image: docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub reference: String,
}

/// Run `graft verify`: exit 0 only when every digest asked about carries a valid signature
/// by the key.
pub async fn run(args: VerifyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let key = PublicKey::load(&args.key)?;
    let reference: ImageRef = args.reference.parse()?;
    let ep = global.registry.endpoint(None)?;
    let outcomes = verify_all(&reference, args.recursive, &key, &ep).await?;
    report(
        &args.reference,
        &args.key,
        "signatures",
        outcomes,
        global,
        |v| &v.payload,
    )
}

/// Print what a verification found (JSON, or the verified documents on stdout and a summary on
/// stderr) and fail with the first failure, listing the others. Shared by `verify` and
/// `verify-attestation`; `what` names the verified items (`signatures`, `attestations`).
pub fn report<T: serde::Serialize>(
    reference: &str,
    key: &str,
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
                    "Verified {} digest(s) of {reference} with key {key}: {} valid {what}",
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
