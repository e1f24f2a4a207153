//! `graft plan`: what a refresh of the library would produce, without touching a registry
//! (unless `--resolve`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use graft::fsutil::{write_atomic, Durability};
use graft::layer::Compression;
use graft::library::plan::Plan;
use graft::library::Library;
use graft::ops::bake::bake_file;
use graft::ops::plan::{changed_since, plan, revision, Missing};
use graft::ops::shard::Shard;
use graft::ops::status::{status, StatusReport, StatusRequest};
use graft::timestamp::Timestamp;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Arguments of `graft plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The library directory (with graft.yaml, manifests/ and layers/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
    /// `{build}`, `{commit}` and `{branch}` values.
    #[command(flatten)]
    pub build: super::BuildArgs,
    /// Compression of the compat layers whose digests the plan shows: gzip, zstd or none.
    #[arg(long, default_value_t = Compression::Gzip)]
    pub compression: Compression,
    /// Resolve each science reference to its digest (reads the science index from its
    /// registry or layout).
    #[arg(long)]
    pub resolve: bool,
    /// Only the images that `git diff REV..HEAD` of the library affects, each with the
    /// reason (graft.yaml's change_ignore and rebuild_all apply).
    #[arg(long, value_name = "REV")]
    pub changed_since: Option<String>,
    /// Only the images of shard I of N (by a stable hash of the name), as
    /// `graft refresh --shard I/N` selects them.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Print only a CI job matrix of the selected images, one job per image name: a GitHub
    /// Actions `strategy.matrix` (JSON `{"include":[…]}`, for fromJSON) or a GitLab
    /// `parallel:matrix` (YAML list; with -o json, JSON). See docs/ci.md.
    #[arg(long, value_name = "CI", value_enum)]
    pub matrix: Option<MatrixFor>,
    /// Also compare each image with the registry, as `graft status` does: up to date, stale
    /// (and why), or missing (reads each science root and each `{version}` tag).
    #[arg(long, conflicts_with = "matrix")]
    pub status: bool,
    /// Also write a buildx bake file (docker-bake.json) for the selected `build:` images, to
    /// run from the library root with `docker buildx bake -f FILE --metadata-file M`; then
    /// `graft build --from-metadata M`. Library bases outside it are pinned by digest (one
    /// registry request each). See docs/decisions.md §28.
    #[arg(long, value_name = "FILE")]
    pub bake: Option<PathBuf>,
    /// With --bake: do not resolve library bases outside the bake (no registry access); the
    /// builder then pulls the tags their FROM lines name.
    #[arg(long, requires = "bake")]
    pub bake_unpinned: bool,
}

/// The CI system `--matrix` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatrixFor {
    /// GitHub Actions `strategy.matrix`.
    Github,
    /// GitLab CI `parallel:matrix`.
    Gitlab,
}

/// Run `graft plan`.
pub async fn run(args: PlanArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let lib = Library::open(&args.library)?;
    // SOURCE_DATE_EPOCH is read here, at the edge; git is read by `revision`.
    let rev = revision(
        lib,
        &args.build.flags(),
        args.build.ci_branch(),
        Timestamp::from_env()?,
        Missing::Preview,
    )?;
    for w in &rev.warnings {
        eprintln!("warning: {w}");
    }
    let changes = match &args.changed_since {
        Some(since) => Some(changed_since(&rev.library, rev.repo.as_ref(), since)?),
        None => None,
    };
    let ep = match args.resolve || args.status {
        true => Some(global.registry.endpoint(None)?),
        false => None,
    };
    let plan = plan(
        &rev.library,
        &rev.build,
        rev.created,
        args.compression,
        changes.as_ref(),
        args.shard,
        ep.as_ref().filter(|_| args.resolve),
    )
    .await?;
    // Computed before anything is printed (a base that cannot be resolved stops here), written
    // only when the plan has no errors.
    let bake = match &args.bake {
        None => None,
        Some(_) => {
            let bake_ep = match args.bake_unpinned {
                true => None,
                false => match &ep {
                    Some(ep) => Some(ep.clone()),
                    None => Some(global.registry.endpoint(None)?),
                },
            };
            Some(bake_file(&rev.library, &plan.builds, &rev.build, bake_ep.as_ref()).await?)
        }
    };
    let status = match (&ep, args.status) {
        (Some(ep), true) => Some(plan_status(&plan, &rev, ep).await?),
        _ => None,
    };
    match (args.matrix, global.output) {
        (Some(ci), output) => print_matrix(&plan, ci, output, global.quiet)?,
        (None, Output::Json) => match &status {
            Some(st) => print_json(&with_status(&plan, st)?)?,
            None => print_json(&plan)?,
        },
        (None, Output::Text) => print_text(&plan, global.verbose > 0, status.as_ref())?,
    }
    let missing = rev.library.missing_build_values(&rev.build);
    if let Some((_, first)) = missing.first() {
        let names: Vec<String> = missing.iter().map(|(v, _)| format!("{{{v}}}")).collect();
        eprintln!(
            "warning: no value for {} (needed by {first}): shown as placeholders; refresh refuses without --{}",
            names.join(", "),
            missing[0].0
        );
    }
    for c in &plan.conflicts {
        let level = if c.error { "error" } else { "warning" };
        eprintln!("{level}: {}: {}", c.kind, c.message);
    }
    if plan.has_errors() {
        anyhow::bail!("the plan has conflicts");
    }
    if let (Some(file), Some(doc)) = (&args.bake, &bake) {
        for u in &doc.unpinned {
            eprintln!(
                "warning: the base {u} is not pinned (--bake-unpinned): the builder pulls its tag"
            );
        }
        write_atomic(file, &doc.to_bytes()?, 0o644, Durability::Synced)?;
        if !global.quiet {
            eprintln!("wrote {} ({} targets)", file.display(), plan.builds.len());
        }
    }
    Ok(())
}

/// The registry status of the plan's images (`--status`): `graft status` for their names,
/// without orphans.
async fn plan_status(
    plan: &Plan,
    rev: &graft::ops::plan::Revision,
    ep: &graft::store::open::Endpoint,
) -> anyhow::Result<StatusReport> {
    let mut names: Vec<String> = plan.images.iter().map(|i| i.name.clone()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(StatusReport {
            images: Vec::new(),
            orphans: Vec::new(),
        });
    }
    let req = StatusRequest {
        names,
        build: rev.build.clone(),
        created: rev.created,
        orphans: false,
    };
    Ok(status(&rev.library, &req, ep).await?)
}

/// The plan's JSON with each image's registry status as `.images[].status`.
fn with_status(plan: &Plan, st: &StatusReport) -> anyhow::Result<serde_json::Value> {
    let mut doc = serde_json::to_value(plan)?;
    if let Some(images) = doc.get_mut("images").and_then(|i| i.as_array_mut()) {
        for (img, planned) in images.iter_mut().zip(&plan.images) {
            if let (Some(obj), Some(s)) = (
                img.as_object_mut(),
                st.images.iter().find(|s| s.manifest == planned.manifest),
            ) {
                obj.insert("status".into(), serde_json::to_value(s)?);
            }
        }
    }
    Ok(doc)
}

/// The matrix alone on stdout, one document: GitHub's is JSON on one line (for
/// `$GITHUB_OUTPUT`) in both formats; GitLab's is YAML, or one line of JSON with `-o json`.
fn print_matrix(plan: &Plan, ci: MatrixFor, output: Output, quiet: bool) -> anyhow::Result<()> {
    use graft::ops::plan::{matrix, matrix_jobs, CiSystem};
    let jobs = matrix_jobs(plan);
    let (system, limit) = match ci {
        MatrixFor::Github => (CiSystem::Github, 256),
        MatrixFor::Gitlab => (CiSystem::Gitlab, 200),
    };
    let doc = matrix(&jobs, system);
    match (ci, output) {
        (MatrixFor::Gitlab, Output::Text) => {
            outln!("{}", serde_yaml_ng::to_string(&doc)?.trim_end())?
        }
        _ => outln!("{}", serde_json::to_string(&doc)?)?,
    }
    if !quiet {
        eprintln!(
            "matrix: {} job{} for {} image{}",
            jobs.len(),
            if jobs.len() == 1 { "" } else { "s" },
            plan.images.len(),
            if plan.images.len() == 1 { "" } else { "s" },
        );
    }
    if jobs.len() > limit {
        eprintln!(
            "warning: {} jobs exceed the CI's limit of {limit} per matrix; hint: split the library with --shard I/N (docs/ci.md)",
            jobs.len()
        );
    }
    Ok(())
}

fn print_text(plan: &Plan, verbose: bool, status: Option<&StatusReport>) -> anyhow::Result<()> {
    for img in &plan.images {
        outln!("{} {} ({})", img.name, img.version, img.manifest)?;
        if let Some(s) = status.and_then(|st| st.images.iter().find(|s| s.manifest == img.manifest))
        {
            outln!("  status     {}", super::status::state_word(s.state))?;
            for line in super::status::image_lines(s) {
                outln!("             {line}")?;
            }
        }
        let pin = match (&img.science.resolved, &img.science.pinned) {
            (Some(d), _) => format!(" @ {d}"),
            (None, Some(p)) => format!(" (pinned {p})"),
            (None, None) => String::new(),
        };
        let what = if img.build {
            "builds to "
        } else {
            "science   "
        };
        outln!(
            "  {what} {} [{}]{pin}",
            img.science.image,
            img.science.target
        )?;
        let digest = img
            .layer_digest
            .as_ref()
            .map(|d| format!(" {d}"))
            .unwrap_or_default();
        if !img.compat.is_empty() {
            outln!(
                "  compat     {} ({}){digest}",
                img.compat,
                img.chain.join(" + ")
            )?;
        }
        let platforms = if img.platforms.is_empty() {
            "all of the science image's".to_string()
        } else {
            img.platforms.join(", ")
        };
        outln!("  platforms  {platforms}")?;
        for r in img.reasons.iter().flatten() {
            outln!("  changed    {}", r.message)?;
        }
        for r in &img.references {
            outln!("  -> {r}")?;
        }
        for row in &img.branch_tags {
            let name = match row.default {
                true => format!("{} (default)", row.branch),
                false => row.branch.clone(),
            };
            let mark = if row.current { "  <- this run" } else { "" };
            outln!("  on {name}: {}{mark}", row.tags.join(", "))?;
        }
    }
    print_builds(plan)?;
    if verbose {
        for l in &plan.layers {
            outln!("layer {} ({})", l.name, l.chain.join(" + "))?;
            if let Some(b) = &l.built {
                outln!("  digest     {}", b.digest)?;
                outln!("  diff_id    {}", b.diff_id)?;
                outln!("  size       {} bytes", b.size)?;
                outln!("  media type {}", b.media_type)?;
            }
            outln!(
                "  entries    {} ({} files, {} removed)",
                l.entries,
                l.files,
                l.remove.len()
            )?;
            if !l.used_by.is_empty() {
                outln!("  used by    {}", l.used_by.join(", "))?;
            }
        }
    }
    if let Some(b) = &plan.branch {
        let what = match (b.is_default, &b.default_branch) {
            (true, Some(_)) => "the default branch".to_string(),
            (true, None) => "default branch unknown".to_string(),
            (false, Some(d)) => format!("not the default branch {d}"),
            (false, None) => "not the default branch".to_string(),
        };
        outln!("branch {} ({what})", b.name)?;
    }
    if let Some(c) = &plan.changes {
        outln!(
            "changed since {} ({}): {} file{}, {} ignored; {} image{} affected",
            c.since,
            &c.commit[..c.commit.len().min(12)],
            c.files.len(),
            if c.files.len() == 1 { "" } else { "s" },
            c.ignored.len(),
            c.images.len(),
            if c.images.len() == 1 { "" } else { "s" },
        )?;
    }
    let refs: usize = plan.images.iter().map(|i| i.references.len()).sum();
    let used = plan.layers.iter().filter(|l| l.built.is_some()).count();
    outln!(
        "plan: {} final image{}, {refs} reference{}, {used} compat layer{} to build",
        plan.images.len(),
        if plan.images.len() == 1 { "" } else { "s" },
        if refs == 1 { "" } else { "s" },
        if used == 1 { "" } else { "s" },
    )?;
    Ok(())
}

/// The builds (`build:` manifests) in order, each with its Dockerfile's base images.
fn print_builds(plan: &Plan) -> anyhow::Result<()> {
    use graft::library::order::SourceState;
    if plan.builds.is_empty() {
        return Ok(());
    }
    outln!("build order (graft build is not implemented yet):")?;
    for (i, b) in plan.builds.iter().enumerate() {
        let stage = b
            .stage
            .as_ref()
            .map(|s| format!(", stage {s}"))
            .unwrap_or_default();
        outln!(
            "  {}. {} {} ({}) -> {}",
            i + 1,
            b.name,
            b.version,
            b.manifest,
            b.image
        )?;
        match b.source {
            SourceState::NotFetched => outln!(
                "     dockerfile {} (source not fetched: graft build --dry-run fetches it{stage})",
                b.dockerfile
            )?,
            SourceState::Library => outln!("     dockerfile {}{stage}", b.dockerfile)?,
            SourceState::Git => outln!("     dockerfile {} (git source){stage}", b.dockerfile)?,
        }
        for base in &b.bases {
            let from = match &base.library {
                Some(m) => format!(" (built here: {m})"),
                None => String::new(),
            };
            let shown = match base.written == base.expanded {
                true => base.expanded.clone(),
                false => format!("{} = {}", base.written, base.expanded),
            };
            outln!("     FROM {shown}{from}")?;
        }
        if b.bases.is_empty() && b.source == SourceState::Library {
            outln!("     FROM scratch")?;
        }
    }
    Ok(())
}
