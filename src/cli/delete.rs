//! `graft delete REF…`: delete manifests from a registry or an OCI layout directory, refusing
//! when another tag points at one of them (a registry deletes a manifest with every tag on it).

use clap::Args;

use graft::ops::tag::delete;
use graft::reference::ImageRef;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// What to delete: docker://HOST/REPO:TAG, docker://HOST/REPO@DIGEST or oci:DIR:TAG (its
    /// index.json entries go; blobs stay). Every tag on the manifest must be named, or nothing
    /// is deleted.
    #[arg(required = true, value_name = "REF")]
    pub references: Vec<String>,
    /// Check and show what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Run `graft delete`.
pub async fn run(args: DeleteArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let refs = args
        .references
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<ImageRef>, _>>()?;
    let ep = global.registry.endpoint(None)?;
    let report = delete(&refs, args.dry_run, &ep).await?;
    if !global.quiet {
        for n in &report.notes {
            eprintln!("note: {n}");
        }
    }
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => {
            let verb = if report.dry_run {
                "would delete"
            } else {
                "deleted"
            };
            for d in &report.deleted {
                let tags = if d.tags.is_empty() {
                    "untagged".to_string()
                } else {
                    format!("tags {}", d.tags.join(", "))
                };
                outln!("{verb} {}@{} ({tags})", d.repository, d.digest)?;
            }
        }
    }
    Ok(())
}
