//! `graft status [NAME…] --library DIR`: per final image, what the registry has against what
//! the library would write now (up to date, stale and why, missing), and the tags no manifest
//! produces any more.

use std::path::PathBuf;

use clap::Args;

use graft::library::Library;
use graft::ops::plan::{revision, Missing};
use graft::ops::status::{status, ImageState, State, StatusReport, StatusRequest};
use graft::timestamp::Timestamp;

use super::output::outln;
use super::{print_json, BuildArgs, GlobalArgs, Output};

/// Arguments of `graft status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only the manifests with these image names (default: all).
    pub names: Vec<String>,
    /// The library directory (with graft.yaml, manifests/ and layers/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
    /// Destination prefix replacing graft.yaml's `repo` (as for `graft refresh --repo`).
    #[arg(long, value_name = "REPO")]
    pub repo: Option<String>,
    /// `{branch}` decides which tags are compared (the branch policy); `--build` and
    /// `--commit` are accepted and not needed.
    #[command(flatten)]
    pub build: BuildArgs,
}

/// Run `graft status`: one call to [`status`], rendered.
pub async fn run(args: StatusArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut lib = Library::open(&args.library)?;
    if let Some(repo) = &args.repo {
        lib = lib.with_repo(repo);
    }
    // Build values are not needed to compare: missing ones are previews, as in `plan`.
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
    let req = StatusRequest {
        names: args.names.clone(),
        build: rev.build.clone(),
        created: rev.created,
        orphans: true,
    };
    let ep = global.registry.endpoint(None)?;
    let report = status(&rev.library, &req, &ep).await?;
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => print_text(&report)?,
    }
    Ok(())
}

/// The state of one image as one word, as text and JSON write it.
pub fn state_word(s: State) -> &'static str {
    match s {
        State::UpToDate => "up-to-date",
        State::Stale => "stale",
        State::Missing => "missing",
        State::Untracked => "untracked",
    }
}

/// The lines of one image's state under its heading (shared with `plan --status`).
pub fn image_lines(i: &ImageState) -> Vec<String> {
    let mut out = Vec::new();
    for t in &i.tags {
        match &t.root {
            Some(r) => out.push(format!("{} -> {}", t.reference, r.digest)),
            None => out.push(format!("{} (no such tag)", t.reference)),
        }
    }
    if i.state == State::Untracked {
        out.push(
            "every tag template of this branch is per-build: no tag says which image is current"
                .into(),
        );
    }
    for r in &i.reasons {
        out.push(r.message.clone());
    }
    out
}

fn print_text(report: &StatusReport) -> anyhow::Result<()> {
    for i in &report.images {
        outln!(
            "{} {} {} ({})",
            i.name,
            i.version,
            state_word(i.state),
            i.manifest
        )?;
        for line in image_lines(i) {
            outln!("  {line}")?;
        }
    }
    for o in &report.orphans {
        outln!("orphaned {}:{} -> {}", o.repository, o.tag, o.digest)?;
    }
    let count = |s: State| report.images.iter().filter(|i| i.state == s).count();
    outln!(
        "status: {} image(s): {} up to date, {} stale, {} missing{}; {} orphaned tag(s)",
        report.images.len(),
        count(State::UpToDate),
        count(State::Stale),
        count(State::Missing),
        match count(State::Untracked) {
            0 => String::new(),
            n => format!(", {n} untracked"),
        },
        report.orphans.len()
    )?;
    Ok(())
}
