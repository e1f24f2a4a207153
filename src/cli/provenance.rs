//! `graft provenance [--key PUB] REF`: print the SLSA provenance attached to an image.

use clap::Args;

use graft::oci::Platform;
use graft::ops::sign::provenance;
use graft::sign::PublicKey;

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

/// Run `graft provenance`.
pub async fn run(args: ProvenanceArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let r: graft::reference::ImageRef = args.reference.parse()?;
    let key = args.key.as_deref().map(PublicKey::load).transpose()?;
    let ep = global.registry.endpoint(None)?;
    let found = provenance(&r, args.platform.as_ref(), key.as_ref(), &ep).await?;
    let (slsa, verified) = (&found.provenance, found.verified);
    match global.output {
        Output::Json => print_json(&found)?,
        Output::Text => {
            for a in slsa {
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
