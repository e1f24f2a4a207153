//! `graft verify-provenance REF --library DIR [--key PUB]`: rebuild an image from the library
//! commit its provenance records and confirm every digest the statement names.

use std::path::PathBuf;

use clap::Args;

use graft::ops::verify_provenance::{verify_provenance, VerifyProvenanceRequest};
use graft::sign::PublicKey;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft verify-provenance`.
#[derive(Debug, Args)]
pub struct VerifyProvenanceArgs {
    /// A directory of the library's git repository: the recorded commit is checked out of it
    /// into a temporary clone (your work tree is not touched).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
    /// Verify the provenance's signature with this public key (PEM file or env://VAR).
    /// Without it the statement is read unverified.
    #[arg(long, value_name = "PUB")]
    pub key: Option<String>,
    /// Concurrent blob reads.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Image: docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub reference: String,
}

/// Run `graft verify-provenance`: exit 1 naming every digest that does not match.
pub async fn run(args: VerifyProvenanceArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let key = args.key.as_deref().map(PublicKey::load).transpose()?;
    let reference = args.reference.parse()?;
    let work = tempfile::tempdir()?;
    let ep = global.registry.endpoint(None)?;
    let req = VerifyProvenanceRequest {
        reference,
        library: args.library.clone(),
        key: key.as_ref(),
        jobs: args.jobs,
        work_dir: work.path().to_path_buf(),
    };
    let report = verify_provenance(&req, &ep).await?;
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => {
            for s in &report.statements {
                outln!(
                    "{} {} ({} at {})",
                    report.reference,
                    report.digest,
                    s.manifest,
                    s.commit
                )?;
                for c in &s.checks {
                    let verdict = if c.ok { "ok" } else { "MISMATCH" };
                    match (&c.found, c.ok) {
                        (_, true) => outln!("  {verdict:<8} {:<20} {}", c.what, c.expected)?,
                        (found, false) => outln!(
                            "  {verdict:<8} {:<20} recorded {}, rebuilt {}",
                            c.what,
                            c.expected,
                            found.as_deref().unwrap_or("nothing")
                        )?,
                    }
                }
            }
        }
    }
    let mismatches = report.mismatches();
    if !mismatches.is_empty() {
        anyhow::bail!(
            "the provenance of {} does not match its rebuild: {}",
            report.reference,
            mismatches.join(", ")
        );
    }
    if !global.quiet {
        let checked: usize = report.statements.iter().map(|s| s.checks.len()).sum();
        let signature = match report.signature_verified {
            true => "signature verified",
            false => "signature NOT verified (pass --key PUB)",
        };
        eprintln!(
            "Rebuilt {} from its library commit: {checked} digest(s) match; {signature}",
            report.reference
        );
    }
    Ok(())
}
