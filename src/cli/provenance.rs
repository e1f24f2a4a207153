//! `graft provenance [--key PUB] REF`: print the SLSA provenance attached to an image.

use clap::Args;

use graft::oci::Platform;
use graft::sign::verify::{read_attestations, FoundAttestation};
use graft::sign::{verify_attestations, PublicKey, Repo};

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft provenance`.
#[derive(Debug, Args)]
pub struct ProvenanceArgs {
    /// Only print provenance whose signature verifies with this public key (PEM file or
    /// env://VAR). Without it the statements are printed unverified.
    #[arg(long)]
    pub key: Option<String>,
    /// The provenance of this platform's manifest instead of the index's.
    #[arg(long)]
    pub platform: Option<Platform>,
    /// Image: docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG].
    pub reference: String,
}

fn is_slsa(a: &FoundAttestation) -> bool {
    a.predicate_type.starts_with("https://slsa.dev/provenance/")
}

/// Run `graft provenance`.
pub async fn run(args: ProvenanceArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let r: graft::reference::ImageRef = args.reference.parse()?;
    let ep = global.registry.endpoint(None)?;
    let repo = Repo::open(&r, &ep).await?;
    let root = repo.resolve().await?;
    let subject = match &args.platform {
        Some(p) if root.is_index() => root
            .view()
            .manifests
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|q| q.matches(p)))
            .map(|d| d.digest.clone())
            .ok_or_else(|| graft::Error::NotFound {
                what: format!("platform {p} in {}", args.reference),
                detail: None,
            })?,
        _ => root.digest().clone(),
    };
    let (found, verified) = match &args.key {
        Some(k) => {
            let key = PublicKey::load(k)?;
            let v = verify_attestations(&repo, &subject, &key, None).await?;
            (v, true)
        }
        None => (read_attestations(&repo, &subject).await?.0, false),
    };
    let slsa: Vec<&FoundAttestation> = found.iter().filter(|a| is_slsa(a)).collect();
    if slsa.is_empty() {
        return Err(graft::Error::NotFound {
            what: format!("SLSA provenance for {}", repo.describe(&subject)),
            detail: Some(format!("{} other attestation(s) attached", found.len())),
        }
        .into());
    }
    match global.output {
        Output::Json => print_json(&serde_json::json!({
            "subject": repo.describe(&subject),
            "verified": verified,
            "provenance": slsa,
        }))?,
        Output::Text => {
            for a in &slsa {
                outln!("{}", serde_json::to_string_pretty(&a.statement)?)?;
            }
            if !global.quiet && !verified {
                eprintln!(
                    "note: {} statement(s) printed unverified; pass --key PUB to verify their signatures",
                    slsa.len()
                );
            }
        }
    }
    Ok(())
}
