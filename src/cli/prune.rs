//! `graft prune --library DIR --branch-tags [--dry-run]`: delete the branch tags whose branch
//! is gone from the library's git remote, keeping every digest another tag still needs.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use graft::library::Library;
use graft::ops::prune::{prune_branch_tags, KeepReason, PruneReport, PruneRequest};

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The library directory (with graft.yaml, manifests/ and layers/), in a git checkout.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
    /// Prune the tags made on branches that no longer exist (by the `org.graft.branch`
    /// annotation of what each tag points at, against `git ls-remote --heads`). Required:
    /// it is the only kind of pruning.
    #[arg(long, required = true)]
    pub branch_tags: bool,
    /// Destination prefix replacing graft.yaml's `repo` (as for `graft refresh --repo`).
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// The git remote whose branches count: a remote of the library's repository, or a URL.
    #[arg(long, value_name = "NAME|URL", default_value = "origin")]
    pub remote: String,
    /// Longest wait for the remote to answer `git ls-remote`, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub git_timeout: u64,
    /// Decide and show what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Run `graft prune`.
pub async fn run(args: PruneArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut lib = Library::open(&args.library)?;
    if let Some(repo) = &args.repo {
        lib = lib.with_repo(repo);
    }
    let req = PruneRequest {
        remote: args.remote.clone(),
        timeout: Duration::from_secs(args.git_timeout),
        dry_run: args.dry_run,
    };
    let ep = global.registry.endpoint(None)?;
    let report = prune_branch_tags(&lib, &req, &ep).await?;
    if !global.quiet {
        for n in &report.notes {
            eprintln!("note: {n}");
        }
    }
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => print_text(&report)?,
    }
    Ok(())
}

fn print_text(report: &PruneReport) -> anyhow::Result<()> {
    let verb = if report.dry_run {
        "would prune"
    } else {
        "pruned"
    };
    let mut live = 0;
    for r in &report.repositories {
        for p in &r.pruned {
            outln!(
                "{verb} {}@{} (tags {}; branch {} is gone)",
                r.repository,
                p.digest,
                p.tags.join(", "),
                p.branches.join(", ")
            )?;
        }
        for k in &r.kept {
            let why = match k.reason {
                KeepReason::BranchExists | KeepReason::DefaultBranch => {
                    live += 1;
                    continue;
                }
                KeepReason::SharedDigest => format!(
                    "branch {} is gone, but {} is also tagged {} (a delete would take it)",
                    k.branch,
                    k.digest,
                    k.kept_by.join(", ")
                ),
                KeepReason::NotABranchTag => format!(
                    "made on branch {}, which is gone, but not a tag that branch writes",
                    k.branch
                ),
                KeepReason::UnresolvedTag => format!(
                    "branch {} is gone, but the listed tag {} does not resolve and might be on \
                     {}",
                    k.branch,
                    k.kept_by.join(", "),
                    k.digest
                ),
            };
            outln!("kept {}:{} ({why})", r.repository, k.tag)?;
        }
    }
    outln!(
        "{live} tag(s) of live branches kept (default branch {}; {} branch(es) on {})",
        report.default_branch,
        report.branches.len(),
        report.remote
    )?;
    Ok(())
}
