//! `graft refresh`: the compat refresh of a library's images.

use std::path::PathBuf;

use clap::Args;

use graft::library::Library;
use graft::ops::plan::{changed_since, revision, Missing};
use graft::ops::refresh::{refresh, ImageStatus, RefreshOptions, RefreshRequest, RefreshResult};
use graft::timestamp::Timestamp;

use super::output::outln;
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
    /// Show what would be written (references and digests) and which images are up to date;
    /// write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write every selected image, even one whose `{version}` tags already hold an image made
    /// from the same inputs (which is otherwise skipped as up to date).
    #[arg(long)]
    pub force: bool,
    /// Concurrent blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// Signing and provenance.
    #[command(flatten)]
    pub signing: super::sign::SigningArgs,
    /// Refresh only the images that `git diff REV..HEAD` of the library affects (as
    /// `graft plan --changed-since REV` lists them).
    #[arg(long, value_name = "REV")]
    pub changed_since: Option<String>,
    /// Refresh only the images of shard I of N (by a stable hash of the name): N jobs with
    /// 1/N … N/N refresh the selection exactly once between them.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<graft::ops::shard::Shard>,
}

/// Run `graft refresh`: one call to [`refresh`], rendered.
pub async fn run(args: RefreshArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = now_or_epoch()?;
    // Load the key first: a wrong password must stop the run before anything is pushed.
    let key = args.signing.load_key()?;
    let mut lib = Library::open(&args.library)?;
    if let Some(repo) = &args.repo {
        lib = lib.with_repo(repo);
    }
    // SOURCE_DATE_EPOCH, when set, is read here; git is read by `revision`.
    let epoch = Timestamp::from_env()?;
    let rev = revision(
        lib,
        &args.build.flags(),
        args.build.ci_branch(),
        epoch,
        Missing::Refuse,
    )?;
    let mut lib = rev.library.clone();
    let mut names = args.names.clone();
    let mut changes_json = None;
    if let Some(since) = &args.changed_since {
        // Names narrow the change set further: checked against the whole library first.
        graft::ops::refresh::select(&lib, &names)?;
        let changes = changed_since(&lib, rev.repo.as_ref(), since)?;
        if !global.quiet {
            eprintln!(
                "changed since {since}: {} of {} image(s) affected",
                changes.images.len(),
                lib.manifests().len()
            );
            for a in &changes.images {
                for r in &a.reasons {
                    eprintln!("  {}: {}", a.manifest, r.message);
                }
            }
        }
        lib = lib.retain_manifests(|m| {
            changes.reasons(&m.rel).is_some() && (names.is_empty() || names.contains(&m.name))
        });
        names.clear();
        // `-o json` carries the reasons as `.changes`, as plan's JSON does.
        changes_json = Some(serde_json::to_value(&changes)?);
    }
    if let Some(shard) = args.shard {
        let of = lib.manifests().len();
        lib = graft::ops::shard::select(lib, &names, shard)?;
        names.clear();
        if !global.quiet {
            eprintln!("shard {shard}: {} of {of} image(s)", lib.manifests().len());
        }
    }
    let work = tempfile::tempdir()?;
    let options = RefreshOptions {
        build: rev.build.clone(),
        created: rev.created,
        dry_run: args.dry_run,
        jobs: args.jobs.max(1),
        work_dir: work.path().to_path_buf(),
    };
    let signing = args.signing.signing(
        key,
        &super::sign::RunFacts {
            build: &options.build,
            created: options.created,
            revision: &rev,
            epoch,
            started,
            repo_override: args.repo.as_deref(),
        },
    );
    // SOURCE_DATE_EPOCH, when set, was read above: the clock stays at this edge.
    let request = RefreshRequest {
        names,
        options,
        signing,
        force: args.force,
        clock: Box::new(move || epoch.unwrap_or_else(super::wall_clock)),
    };
    let ep = global.registry.endpoint(None)?;
    let reporter = Bars::reporter(global.quiet);
    let report = refresh(&lib, request, &ep, &reporter).await?;
    if !global.quiet {
        for r in &report.images {
            for d in &r.dropped {
                eprintln!("note: {}: left out {} ({})", r.name, d.digest, d.reason);
            }
        }
    }
    match global.output {
        Output::Json => match changes_json {
            Some(changes) => {
                let mut v = serde_json::to_value(&report)?;
                v["changes"] = changes;
                print_json(&v)?
            }
            None => print_json(&report)?,
        },
        Output::Text => print_text(&report.images, report.dry_run)?,
    }
    if !global.quiet {
        let kept = report
            .images
            .iter()
            .filter(|r| r.status == ImageStatus::UpToDate)
            .count();
        let verb = if report.dry_run {
            "would write"
        } else {
            "wrote"
        };
        eprintln!(
            "{verb} {} image(s); {kept} up to date{}",
            report.images.len() - kept,
            if kept > 0 && !args.force {
                " (--force writes them anyway)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn print_text(results: &[RefreshResult], dry_run: bool) -> anyhow::Result<()> {
    for r in results {
        if r.status == ImageStatus::UpToDate {
            let verb = if dry_run { "would skip" } else { "skipped" };
            outln!("{} {} {} up to date", r.name, r.version, r.digest)?;
            outln!("  science  {} @ {}", r.science, r.science_digest)?;
            outln!(
                "  compat   {} {}",
                r.compat.join(" + "),
                r.compat_layer.digest
            )?;
            outln!("  inputs   {}", r.inputs)?;
            for reference in &r.references {
                outln!("  {verb} {reference} (already holds these inputs)")?;
            }
            continue;
        }
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
