//! `graft mirror --config FILE`: copy many images from a sync file, incrementally.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use graft::ops::mirror::{load_config, plan, run, Status};

use super::output::outln;
use super::progress::Bars;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft mirror`.
#[derive(Debug, Args)]
pub struct MirrorArgs {
    /// The sync file (YAML): `destination`, `sources` with tag filters. See the README.
    #[arg(long)]
    pub config: PathBuf,
    /// List what would be copied; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Images copied at once (overrides the file's `jobs`).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Refuse (fail) every image whose signature does not verify with this cosign public
    /// key; nothing of a refused image is written.
    #[arg(long, value_name = "PUB")]
    pub verify_key: Option<String>,
}

/// Run `graft mirror`. Exit code 1 when any image failed (the others are still copied).
pub async fn run_mirror(args: MirrorArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args.config)?;
    let key = args
        .verify_key
        .as_deref()
        .map(graft::sign::PublicKey::load)
        .transpose()?;
    let ep = global.registry.endpoint(None)?;
    let jobs = args.jobs.or(cfg.jobs).unwrap_or(4).max(1);
    let (items, mut outcomes) = plan(&cfg, &ep).await;
    if args.dry_run {
        match global.output {
            Output::Json => print_json(&json!({"images": items, "failed": outcomes}))?,
            Output::Text => {
                for i in &items {
                    outln!("{} -> {}", i.source, i.destination)?;
                }
                for o in &outcomes {
                    eprintln!(
                        "FAILED {}: {}",
                        o.item.source,
                        o.error.as_deref().unwrap_or("")
                    );
                }
            }
        }
        anyhow::ensure!(outcomes.is_empty(), "{} source(s) failed", outcomes.len());
        return Ok(());
    }
    let reporter = Bars::reporter(global.quiet);
    outcomes.extend(run(items, &ep, jobs, key.as_ref(), &reporter).await);
    outcomes.sort_by(|a, b| a.item.source.cmp(&b.item.source));
    let count = |s: Status| outcomes.iter().filter(|o| o.status == s).count();
    let (copied, skipped, failed) = (
        count(Status::Copied),
        count(Status::Skipped),
        count(Status::Failed),
    );
    match global.output {
        Output::Json => print_json(&json!({
            "copied": copied, "skipped": skipped, "failed": failed, "images": outcomes,
        }))?,
        Output::Text => {
            for o in &outcomes {
                match o.status {
                    Status::Failed => eprintln!(
                        "FAILED {}: {}",
                        o.item.source,
                        o.error.as_deref().unwrap_or("")
                    ),
                    s => outln!(
                        "{:<7} {} -> {} {}",
                        s.as_str(),
                        o.item.source,
                        o.item.destination,
                        o.digest.as_ref().map(|d| d.to_string()).unwrap_or_default()
                    )?,
                }
            }
            eprintln!("{copied} copied, {skipped} skipped, {failed} failed");
        }
    }
    anyhow::ensure!(failed == 0, "{failed} image(s) failed to mirror");
    Ok(())
}
