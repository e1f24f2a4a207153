//! `graft verify --key PUB [--recursive] REF`.

use clap::Args;

use graft::sign::{verify_signatures, PublicKey};

use super::sign::targets;
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
    /// Image: docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG].
    pub reference: String,
}

/// Run `graft verify`: exit 0 only when every digest asked about carries a valid signature
/// by the key.
pub async fn run(args: VerifyArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let key = PublicKey::load(&args.key)?;
    let ep = global.registry.endpoint(None)?;
    let (repo, subjects) = targets(&args.reference, &ep, args.recursive).await?;
    let mut results = Vec::new();
    let mut failures = Vec::new();
    for s in &subjects {
        match verify_signatures(&repo, &s.digest, &key).await {
            Ok(v) => results.push(v),
            Err(e) => failures.push(e),
        }
    }
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "reference": args.reference,
            "verified": failures.is_empty(),
            "signatures": results.iter().flatten().collect::<Vec<_>>(),
            "failures": failures.iter().map(|e| match e {
                graft::Error::Verify(f) => serde_json::to_value(f).unwrap_or_default(),
                e => serde_json::json!({"error": e.to_string()}),
            }).collect::<Vec<_>>(),
        }))?,
        Output::Text => {
            for v in results.iter().flatten() {
                println!("{}", serde_json::to_string(&v.payload)?);
            }
            if !global.quiet && failures.is_empty() {
                eprintln!(
                    "Verified {} digest(s) of {} with key {}: {} valid signature(s)",
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
