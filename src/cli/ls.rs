//! `graft ls REPO`: list tags.

use clap::Args;

use graft::ops::tag::list_tags;
use graft::reference::ImageRef;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// docker://HOST/REPO (any tag is ignored), oci:DIR or oci-archive:FILE.
    pub repository: String,
    /// Hide the tags derived from digests: cosign's `sha256-<hex>.sig`, `.att`, `.sbom` and
    /// referrers fallback indexes `sha256-<hex>`.
    #[arg(long)]
    pub omit_digest_tags: bool,
}

/// Run `graft ls`.
pub async fn run(args: LsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let r: ImageRef = args.repository.parse()?;
    let ep = global.registry.endpoint(None)?;
    let tags = list_tags(&r, &ep, args.omit_digest_tags).await?;
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
