//! `graft rebase REF --onto NEWBASE [--old-base OLD] [-t DEST…]`: swap the base layers of every
//! platform of an image for a new base's, without a rebuild.

use clap::Args;

use graft::ops::rebase::{rebase_image, RebaseImage};

use super::output::outln;
use super::progress::Bars;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft rebase`.
#[derive(Debug, Args)]
pub struct RebaseArgs {
    /// The image to rebase (an index or a single manifest), on any transport.
    pub image: String,
    /// The new base image.
    #[arg(long)]
    pub onto: String,
    /// The base the image was built on (default: the image's
    /// org.opencontainers.image.base.name/.digest annotations, pinned to that digest).
    #[arg(long)]
    pub old_base: Option<String>,
    /// Where to write the result (repeatable; default: back to the image's own tag).
    #[arg(long = "tag", short = 't', value_name = "DEST")]
    pub tags: Vec<String>,
    /// Check and compute the result, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Concurrent blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
}

/// Run `graft rebase`.
pub async fn run(args: RebaseArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let req = RebaseImage {
        image: args.image.parse()?,
        onto: args.onto.parse()?,
        old_base: args.old_base.as_deref().map(str::parse).transpose()?,
        destinations: args
            .tags
            .iter()
            .map(|t| t.parse())
            .collect::<Result<_, _>>()?,
        dry_run: args.dry_run,
        jobs: args.jobs,
    };
    let ep = global.registry.endpoint(None)?;
    let reporter = Bars::reporter(global.quiet);
    let out = rebase_image(&req, &ep, &reporter).await?;
    if !global.quiet {
        for d in &out.dropped {
            eprintln!("note: left out {}: {}", d.digest, d.reason);
        }
    }
    match global.output {
        Output::Json => print_json(&out)?,
        Output::Text => {
            if !global.quiet {
                for p in &out.platforms {
                    eprintln!(
                        "{}: {} -> {} ({} base layers replaced by {}, {} own kept)",
                        p.platform.as_deref().unwrap_or("image"),
                        p.image,
                        p.digest,
                        p.removed_layers,
                        p.base_layers,
                        p.own_layers
                    );
                }
                let verb = if out.dry_run { "would write" } else { "wrote" };
                for d in &out.destinations {
                    eprintln!("{verb} {d}");
                }
            }
            outln!("{}", out.digest)?;
        }
    }
    Ok(())
}
