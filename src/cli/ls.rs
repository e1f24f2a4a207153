//! `graft ls REPO`: list tags.

use clap::Args;

use graft::reference::ImageRef;
use graft::store::open::open_repository;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// docker://HOST/REPO (any tag is ignored), oci:DIR or oci-archive:FILE.
    pub repository: String,
}

/// Run `graft ls`.
pub async fn run(args: LsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let r: ImageRef = args.repository.parse()?;
    let ep = global.registry.endpoint(None)?;
    let tags = open_repository(&r, &ep, false)?.list_tags().await?;
    match global.output {
        Output::Json => print_json(&tags)?,
        Output::Text => {
            for t in tags {
                outln!("{t}")?;
            }
        }
    }
    Ok(())
}
