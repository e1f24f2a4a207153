//! `graft attest --key KEY --predicate FILE --type TYPE [--format …] [--recursive] REF…`.

use clap::Args;
use futures::{StreamExt, TryStreamExt};

use graft::oci::Descriptor;
use graft::sign::{attach, predicate_type_uri, AttestOptions, Repo};

use super::sign::{load_signing_key, report, targets, FormatArg};
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
    let ep = global.registry.endpoint(None)?;
    let mut work = Vec::new();
    for r in &args.references {
        work.push(targets(r, &ep, args.recursive, true).await?);
    }
    let key = load_signing_key(&args.key)?;
    let opts = AttestOptions {
        format: args.format.into(),
        ..AttestOptions::default()
    };
    let jobs: Vec<(&Repo, &Descriptor)> = work
        .iter()
        .flat_map(|(repo, subjects)| subjects.iter().map(move |s| (repo, s)))
        .collect();
    let reports: Vec<(String, attach::AttachReport)> = futures::stream::iter(jobs)
        .map(|(repo, subject)| {
            let (key, opts, predicate, predicate_type) = (&key, &opts, &predicate, &predicate_type);
            async move {
                let statement = attach::attestation_statement(
                    repo,
                    &subject.digest,
                    predicate_type,
                    predicate.clone(),
                );
                let report = attach::attest(repo, subject, key, &statement, opts).await?;
                Ok::<_, graft::Error>((repo.describe(&subject.digest), report))
            }
        })
        .buffered(args.jobs.max(1))
        .try_collect()
        .await?;
    report(&reports, "Attested", global)
}
