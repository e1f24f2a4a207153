//! `graft verify-attestation --key PUB [--type TYPE] [--recursive] REF`.

use clap::Args;

use graft::sign::{predicate_type_uri, verify_attestations, PublicKey};

use super::sign::targets;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft verify-attestation`.
#[derive(Debug, Args)]
pub struct VerifyAttestationArgs {
    /// Public key: a PEM file or env://VAR.
    #[arg(long)]
    pub key: String,
    /// Only attestations of this predicate type (slsaprovenance1, …, or a URI).
    #[arg(long = "type", value_name = "TYPE")]
    pub predicate_type: Option<String>,
    /// Also verify every manifest listed by an index (each must be attested).
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Image: docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG].
    pub reference: String,
}

/// Run `graft verify-attestation`: prints the verified statements.
pub async fn run(args: VerifyAttestationArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let key = PublicKey::load(&args.key)?;
    let wanted = args
        .predicate_type
        .as_deref()
        .map(predicate_type_uri)
        .transpose()?;
    let ep = global.registry.endpoint(None)?;
    let (repo, subjects) = targets(&args.reference, &ep, args.recursive).await?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for s in &subjects {
        match verify_attestations(&repo, &s.digest, &key, wanted.as_deref()).await {
            Ok(v) => results.push(v),
            Err(e) => failures.push(e),
        }
    }
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "reference": args.reference,
            "verified": failures.is_empty(),
            "attestations": results.iter().flatten().collect::<Vec<_>>(),
            "failures": failures.iter().map(|e| match e {
                graft::Error::Verify(f) => serde_json::to_value(f).unwrap_or_default(),
                e => serde_json::json!({"error": e.to_string()}),
            }).collect::<Vec<_>>(),
        }))?,
        Output::Text => {
            for a in results.iter().flatten() {
                println!("{}", serde_json::to_string(&a.statement)?);
            }
            if !global.quiet && failures.is_empty() {
                eprintln!(
                    "Verified {} digest(s) of {} with key {}: {} attestation(s)",
                    results.len(),
                    args.reference,
                    args.key,
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
                eprintln!("error: {more}");
            }
            Err(first.into())
        }
    }
}
