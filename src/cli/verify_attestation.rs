//! `graft verify-attestation (--key PUB | keyless flags) [--type TYPE] [--recursive] REF`.

use clap::Args;

use graft::ops::sign::{load_verifier, verify_attestations_all};
use graft::reference::ImageRef;
use graft::sign::predicate_type_uri;

use super::verify::VerifyWith;
use super::GlobalArgs;

/// Arguments of `graft verify-attestation`.
#[derive(Debug, Args)]
pub struct VerifyAttestationArgs {
    /// A key or keyless.
    #[command(flatten)]
    pub with: VerifyWith,
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
    let by = args.with.by();
    let loaded = load_verifier(&by)?;
    let wanted = args
        .predicate_type
        .as_deref()
        .map(predicate_type_uri)
        .transpose()?;
    let reference: ImageRef = args.reference.parse()?;
    let ep = global.registry.endpoint(None)?;
    let outcomes = verify_attestations_all(
        &reference,
        args.recursive,
        loaded.verifier(),
        wanted.as_deref(),
        &ep,
    )
    .await?;
    super::verify::report(
        &args.reference,
        &loaded.describe(&by),
        "attestations",
        outcomes,
        global,
        |a| &a.statement,
    )
}
