//! `graft refresh`: the compat refresh of a library's images.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;

use graft::copy::Dedupe;
use graft::library::Library;
use graft::refresh::{
    commit_all, prepare, push, sign_result, LayerCache, ProvenanceContext, RefreshOptions,
    RefreshResult, Signing,
};
use graft::sign::BuilderInfo;
use graft::timestamp::Timestamp;

use super::output::outln;
use super::progress::Bars;
use super::{print_json, BuildArgs, GlobalArgs, Output};

/// Images of a library prepared, and then written, at the same time.
const IMAGES_AT_ONCE: usize = 4;

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
    /// Sign the index and every platform manifest written with this cosign key (a path or
    /// env://VAR; its password from COSIGN_PASSWORD).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<String>,
    /// Attach a signed SLSA v1 provenance statement to the index and every platform manifest
    /// (needs --sign-key).
    #[arg(long, requires = "sign_key")]
    pub provenance: bool,
    /// `runDetails.builder.id` (default: from GitHub Actions, GitLab CI or Jenkins variables,
    /// else graft's local builder id).
    #[arg(long, value_name = "URI")]
    pub builder_id: Option<String>,
    /// `runDetails.metadata.invocationId` (default: from the CI variables).
    #[arg(long, value_name = "ID")]
    pub invocation_id: Option<String>,
}

/// Run `graft refresh`: assemble every selected image first (reads only: bad input stops
/// the run before anything is written), then write them one by one.
pub async fn run(args: RefreshArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = now_or_epoch()?;
    // Load the key first: a wrong password must stop the run before anything is pushed.
    let key = match &args.sign_key {
        Some(k) => Some(super::sign::load_signing_key(k)?),
        None => None,
    };
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
    // Images are read and assembled a few at a time (all of them before anything is written),
    // then written a few at a time; results keep the library's order.
    let prepared: Vec<_> = futures::stream::iter(&manifests)
        .map(|m| prepare(&lib, m, &opts, &ep, &layers))
        .buffered(IMAGES_AT_ONCE)
        .try_collect()
        .await?;
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
    let mut results: Vec<RefreshResult>;
    if args.dry_run {
        results = prepared.into_iter().map(|p| p.result).collect();
    } else {
        let dedupe = Arc::new(Dedupe::default());
        let reporter = Bars::reporter(global.quiet);
        let pushed: Vec<_> = futures::stream::iter(prepared)
            .map(|p| push(p, &opts, &ep, &dedupe, &reporter))
            .buffered(IMAGES_AT_ONCE)
            .try_collect()
            .await?;
        let (pushed, sinks): (Vec<_>, Vec<_>) = pushed.into_iter().unzip();
        results = pushed;
        commit_all(sinks).await?;
        if let Some(key) = key {
            let ctx = if args.provenance {
                Some(provenance_context(&args, &opts, started)?)
            } else {
                None
            };
            let signing = Signing {
                key,
                provenance: ctx,
            };
            for r in &mut results {
                let m = manifests
                    .iter()
                    .find(|m| m.rel == r.manifest)
                    .expect("every result comes from a selected manifest");
                r.signing = Some(sign_result(m, r, &signing, &ep).await?);
            }
        }
    }
    match global.output {
        Output::Json => print_json(&json!({"dry_run": args.dry_run, "images": results}))?,
        Output::Text => print_text(&results, args.dry_run)?,
    }
    Ok(())
}

fn print_text(results: &[RefreshResult], dry_run: bool) -> anyhow::Result<()> {
    for r in results {
        outln!("{} {} {}", r.name, r.version, r.digest)?;
        outln!("  science  {} @ {}", r.science, r.science_digest)?;
        outln!(
            "  compat   {} {}",
            r.compat.join(" + "),
            r.compat_layer.digest
        )?;
        for p in &r.platforms {
            outln!(
                "  {:<16} {} -> {}",
                p.platform.as_deref().unwrap_or("image"),
                p.base,
                p.digest
            )?;
        }
        let verb = if dry_run { "would write" } else { "wrote" };
        for reference in &r.references {
            outln!("  {verb} {reference}")?;
        }
        if let Some(s) = &r.signing {
            outln!(
                "  signed   {} manifest(s); provenance on {}",
                s.signed.len(),
                s.attested.len()
            )?;
        }
        if let Some(t) = &r.transfer {
            outln!(
                "  moved    {} uploaded ({} bytes); {} mounted ({} bytes); {} already present ({} bytes)",
                t.uploaded.count, t.uploaded.bytes, t.mounted.count, t.mounted.bytes, t.present.count, t.present.bytes
            )?;
        }
    }
    Ok(())
}

/// `SOURCE_DATE_EPOCH` when set (reproducible statements), else the clock: the binary's edge.
fn now_or_epoch() -> anyhow::Result<Timestamp> {
    super::created_time()
}

fn provenance_context(
    args: &RefreshArgs,
    opts: &RefreshOptions,
    started: Timestamp,
) -> anyhow::Result<ProvenanceContext> {
    let ci = BuilderInfo::from_ci_env(&|k| std::env::var(k).ok());
    let mut builder = ci.unwrap_or_else(BuilderInfo::local);
    if let Some(id) = &args.builder_id {
        builder.id = id.clone();
    }
    if let Some(i) = &args.invocation_id {
        builder.invocation_id = Some(i.clone());
    }
    Ok(ProvenanceContext {
        builder,
        library_repo: super::git(&args.library, &["remote", "get-url", "origin"]),
        library_commit: super::git(&args.library, &["rev-parse", "HEAD"]),
        options: json!({
            "names": args.names,
            "repo": args.repo,
            "build": opts.build.build,
            "commit": opts.build.commit,
            "branch": opts.build.branch,
            "created": opts.created.rfc3339(),
        }),
        started_on: started,
        finished_on: now_or_epoch()?,
    })
}
