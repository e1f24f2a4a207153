//! `graft tag SRC TAG…`: new tags on an image, inside its own repository (one manifest GET,
//! one PUT per tag).

use clap::Args;

use graft::ops::tag::tag;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image: docker://HOST/REPO:TAG or docker://HOST/REPO@DIGEST, oci:DIR:TAG,
    /// oci-archive:FILE:TAG.
    pub source: String,
    /// The new tags: plain tags (`stable`), or references in the same repository. A tag in
    /// another repository is a copy: use `graft copy`.
    #[arg(required = true, value_name = "TAG")]
    pub tags: Vec<String>,
}

/// Run `graft tag`.
pub async fn run(args: TagArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let source = args.source.parse()?;
    let ep = global.registry.endpoint(None)?;
    let report = tag(&source, &args.tags, &ep).await?;
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => {
            for t in &report.tags {
                outln!("{}:{t} {}", report.repository, report.digest)?;
            }
        }
    }
    Ok(())
}
