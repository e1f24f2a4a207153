//! `graft verify-attestation --key PUB [--type TYPE] [--recursive] REF`.

use clap::Args;

use graft::ops::sign::verify_attestations_all;
use graft::reference::ImageRef;
use graft::sign::{predicate_type_uri, PublicKey};

use super::GlobalArgs;

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
    /// Image: docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:TAG] or oci-archive:FILE[:TAG].
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
    let reference: ImageRef = args.reference.parse()?;
    let ep = global.registry.endpoint(None)?;
    let outcomes =
        verify_attestations_all(&reference, args.recursive, &key, wanted.as_deref(), &ep).await?;
    super::verify::report(
        &args.reference,
        &args.key,
        "attestations",
        outcomes,
        global,
        |a| &a.statement,
    )
}
