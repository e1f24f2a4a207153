//! `graft refresh`: the compat refresh of a library's images.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde_json::json;

use graft::copy::Dedupe;
use graft::library::Library;
use graft::refresh::{prepare, push, LayerCache, RefreshOptions, RefreshResult};

use super::progress::Bars;
use super::{print_json, BuildArgs, GlobalArgs, Output};

/// Arguments of `graft refresh`.
#[derive(Debug, Args)]
pub struct RefreshArgs {
    /// Refresh only the manifests with these image names (default: all).
    pub names: Vec<String>,
    /// The library directory (with graft.yaml, manifests/ and layers/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
    /// Destination prefix replacing graft.yaml's `repo` (e.g. docker://registry/images).
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// `{build}`, `{commit}` and `{branch}` values.
    #[command(flatten)]
    pub build: BuildArgs,
    /// Show what would be written (references and digests); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Concurrent blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
}

/// Run `graft refresh`: assemble every selected image first (reads only: bad input stops
/// the run before anything is written), then write them one by one.
pub async fn run(args: RefreshArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut lib = Library::open(&args.library)?;
    if let Some(repo) = &args.repo {
        lib = lib.with_repo(repo);
    }
    let manifests: Vec<_> = if args.names.is_empty() {
        lib.manifests().iter().collect()
    } else {
        for n in &args.names {
            anyhow::ensure!(
                lib.manifests_named(n).next().is_some(),
                "no manifest in {} names an image {n:?} (known: {})",
                lib.root().join("manifests").display(),
                lib.manifests()
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        lib.manifests()
            .iter()
            .filter(|m| args.names.contains(&m.name))
            .collect()
    };
    let work = tempfile::tempdir()?;
    let opts = RefreshOptions {
        build: args.build.info(&args.library),
        created: super::library_time(&args.library)?,
        dry_run: args.dry_run,
        jobs: args.jobs.max(1),
        work_dir: work.path().to_path_buf(),
    };
    let ep = global.registry.endpoint(None)?;
    let layers = LayerCache::default();
    let mut prepared = Vec::new();
    for m in &manifests {
        prepared.push(prepare(&lib, m, &opts, &ep, &layers).await?);
    }
    for p in &prepared {
        for d in &p.result.dropped {
            if !global.quiet {
                eprintln!(
                    "note: {}: left out {} ({})",
                    p.result.name, d.digest, d.reason
                );
            }
        }
    }
    let mut results: Vec<RefreshResult> = Vec::new();
    if args.dry_run {
        results = prepared.into_iter().map(|p| p.result).collect();
    } else {
        let dedupe = Arc::new(Dedupe::default());
        let reporter = Bars::reporter(global.quiet);
        for p in prepared {
            results.push(push(p, &opts, &ep, &dedupe, &reporter).await?);
        }
    }
    match global.output {
        Output::Json => print_json(&json!({"dry_run": args.dry_run, "images": results}))?,
        Output::Text => print_text(&results, args.dry_run),
    }
    Ok(())
}

fn print_text(results: &[RefreshResult], dry_run: bool) {
    for r in results {
        println!("{} {} {}", r.name, r.version, r.digest);
        println!("  science  {} @ {}", r.science, r.science_digest);
        println!(
            "  compat   {} {}",
            r.compat.join(" + "),
            r.compat_layer.digest
        );
        for p in &r.platforms {
            println!(
                "  {:<16} {} -> {}",
                p.platform.as_deref().unwrap_or("image"),
                p.base,
                p.digest
            );
        }
        let verb = if dry_run { "would write" } else { "wrote" };
        for reference in &r.references {
            println!("  {verb} {reference}");
        }
        if let Some(t) = &r.transfer {
            println!(
                "  moved    {} uploaded ({} bytes); {} mounted ({} bytes); {} already present ({} bytes)",
                t.uploaded.count, t.uploaded.bytes, t.mounted.count, t.mounted.bytes, t.present.count, t.present.bytes
            );
        }
    }
}
