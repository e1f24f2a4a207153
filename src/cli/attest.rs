//! `graft attest --key KEY --predicate FILE --type TYPE [--format …] [--recursive] REF…`.

use clap::Args;

use graft::ops::sign::{attach_all, Attachment};
use graft::sign::{predicate_type_uri, AttestOptions};

use super::sign::{load_signing_key, parse_references, report, FormatArg};
use super::GlobalArgs;

/// Arguments of `graft attest`.
#[derive(Debug, Args)]
pub struct AttestArgs {
    /// Private key: a cosign key file or env://VAR.
    #[arg(long)]
    pub key: String,
    /// The predicate: a JSON file.
    #[arg(long, value_name = "FILE")]
    pub predicate: std::path::PathBuf,
    /// Predicate type: slsaprovenance1, slsaprovenance02, spdxjson, cyclonedx, vuln, openvex,
    /// custom, or a URI.
    #[arg(long = "type", value_name = "TYPE", default_value = "custom")]
    pub predicate_type: String,
    /// Also attest every manifest listed by an index.
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Storage form.
    #[arg(long, value_enum, default_value_t = FormatArg::Simple)]
    pub format: FormatArg,
    /// Digests attested concurrently.
    #[arg(long, short = 'j', default_value_t = 8)]
    pub jobs: usize,
    /// Images: docker://HOST/REPO[:TAG|@DIGEST] or oci:DIR[:TAG].
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// Run `graft attest`.
pub async fn run(args: AttestArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let predicate_type = predicate_type_uri(&args.predicate_type)?;
    let bytes = std::fs::read(&args.predicate)
        .map_err(|e| graft::Error::io("reading predicate", &args.predicate, e))?;
    let predicate: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| graft::Error::Json {
            what: format!("predicate {}", args.predicate.display()),
            source: e,
        })?;
    if !predicate.is_object() {
        return Err(graft::Error::Invalid {
            what: format!("predicate {}", args.predicate.display()),
            reason: "a predicate must be a JSON object".into(),
        }
        .into());
    }
    let references = parse_references(&args.references)?;
    let key = load_signing_key(&args.key)?;
    let what = Attachment::Attestation {
        predicate_type,
        predicate,
        options: AttestOptions {
            format: args.format.into(),
            ..AttestOptions::default()
        },
    };
    let ep = global.registry.endpoint(None)?;
    let reports = attach_all(&references, args.recursive, args.jobs, &key, &what, &ep).await?;
    report(&reports, "Attested", global)
}
