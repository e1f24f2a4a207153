//! `graft ls REPO`: list tags.

use clap::Args;

use graft::reference::ImageRef;

use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// docker://HOST/REPO (any tag is ignored) or oci:DIR.
    pub repository: String,
}

/// Run `graft ls`.
pub async fn run(args: LsArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let r: ImageRef = args.repository.parse()?;
    let tags = match &r {
        ImageRef::Docker(d) => {
            let ep = global.registry.endpoint(None)?;
            let client = ep.pool.get(&ep.key, &d.registry, &ep.config)?;
            client.list_tags(&d.repository).await?
        }
        ImageRef::Layout(l) => ref_names(&graft::store::layout::Layout::open(&l.path)?.entries()?),
        ImageRef::Archive(l) => {
            ref_names(graft::store::archive::ArchiveSource::open(l.clone())?.entries())
        }
    };
    match global.output {
        Output::Json => print_json(&tags)?,
        Output::Text => {
            for t in tags {
                println!("{t}");
            }
        }
    }
    Ok(())
}

fn ref_names(entries: &[graft::oci::Descriptor]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|d| d.annotation(graft::store::index_json::REF_NAME))
        .map(str::to_string)
        .collect()
}
