//! `graft factory …`: the image factory (docs/factory.md). images.yaml is the source of
//! truth; `sync` writes the state files, `check` watches the bases and decides rebuilds (and
//! with `--refresh` refreshes or builds the due library images), `record` adds builds from
//! refresh and build reports, `warehouses` writes Kargo Warehouses.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use graft::library::Library;
use graft::ops::factory::{
    check, config, library, parse_time, record, state::StateDir, sync, warehouse,
};
use graft::timestamp::Timestamp;

use graft::ops::plan::{revision, Missing};
use graft::ops::refresh::{RefreshOptions, RefreshRequest};

use super::build::BuilderArgs;
use super::output::outln;
use super::progress::Bars;
use super::sign::{RunFacts, SigningArgs};
use super::{print_json, wall_clock, BuildArgs, GlobalArgs, Output};

/// Arguments of `graft factory`.
#[derive(Debug, Args)]
pub struct FactoryArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FactoryCommand,
    /// The state directory (`images/`, `base-images/`).
    #[arg(long, global = true, value_name = "DIR", default_value = "state")]
    pub state: PathBuf,
}

/// The factory's commands.
#[derive(Debug, Subcommand)]
pub enum FactoryCommand {
    /// Merge images.yaml into the state files; find each managed image's bases in its Dockerfile.
    Sync(SyncArgs),
    /// Resolve every base and external image; say which images are due for a rebuild.
    Check(Box<CheckArgs>),
    /// Add builds from `graft refresh -o json` or `graft build -o json` reports to the images'
    /// build history.
    Record(RecordArgs),
    /// Write one Kargo Warehouse per base and external image.
    Warehouses(WarehousesArgs),
}

/// `graft factory sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The enrollment file (with --library: optional, read when given).
    #[arg(long, value_name = "FILE")]
    pub images: Option<PathBuf>,
    /// Enroll the manifests of this graft library too (bases: their science image or their
    /// `build:` Dockerfile; settings from graft.yaml's `factory:`).
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
    /// Where source repositories are cloned (bare) and fetched.
    #[arg(long, value_name = "DIR", default_value = ".cache/graft-factory")]
    pub cache: PathBuf,
    /// The time written (RFC 3339 UTC or @SECONDS; default: the clock).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Longest wait for one git command, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub git_timeout: u64,
}

/// `graft factory check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The time of the check (RFC 3339 UTC or @SECONDS; default: the clock).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// Run this command once per due image, with GRAFT_IMAGE_NAME, GRAFT_IMAGE_REFERENCE and
    /// GRAFT_REBUILD_REASON set (the words after --exec, up to `;`, are its argv; no shell).
    #[arg(long, value_name = "CMD", num_args = 1.., value_terminator = ";", allow_hyphen_values = true)]
    pub exec: Option<Vec<String>>,
    /// Longest run of one --exec command, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub exec_timeout: u64,
    /// Registry requests at once.
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// Refresh (`science:`) or build (`build:`, with buildah) the due images that are
    /// manifests of --library, in this process, and record the builds.
    #[arg(long, requires = "library")]
    pub refresh: bool,
    /// The graft library enrolled with `factory sync --library`.
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
    /// Build values of the refresh and the build.
    #[command(flatten)]
    pub build: BuildArgs,
    /// The builder of due `build:` images (buildah), its storage and time limits.
    #[command(flatten)]
    pub builder: BuilderArgs,
    /// Signing and provenance of what is refreshed or built.
    #[command(flatten)]
    pub signing: SigningArgs,
}

/// `graft factory record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// `graft refresh -o json` or `graft build -o json` reports.
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// The build time (RFC 3339 UTC or @SECONDS; default: the clock).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// The commit built.
    #[arg(long)]
    pub commit: Option<String>,
    /// What caused the builds (`push`, `base-update`, `schedule`, …).
    #[arg(long, default_value = "manual")]
    pub trigger: String,
}

/// `graft factory warehouses`.
#[derive(Debug, Args)]
pub struct WarehousesArgs {
    /// Write `<name>.yaml` files here (default: all on stdout, `---` between them).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// The Kubernetes namespace of the Warehouses (wins over graft.yaml's
    /// `factory.namespace`).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The graft library whose graft.yaml gives the namespace (`factory.namespace`).
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,
}

fn now(arg: Option<&str>) -> anyhow::Result<Timestamp> {
    Ok(match arg {
        Some(t) => parse_time(t)?,
        None => wall_clock(),
    })
}

/// Run `graft factory`.
pub async fn run(args: FactoryArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let dir = StateDir { root: args.state };
    match args.command {
        FactoryCommand::Sync(a) => {
            let mut images = Vec::new();
            let file = match (&a.images, &a.library) {
                (Some(f), _) => Some(f.clone()),
                (None, None) => Some(PathBuf::from("images.yaml")),
                (None, Some(_)) => None,
            };
            if let Some(file) = &file {
                let text = std::fs::read_to_string(file).map_err(|e| graft::Error::Input {
                    what: file.display().to_string(),
                    reason: e.to_string(),
                })?;
                images =
                    config::parse(file, &text).map_err(|e| graft::Error::Library(Box::new(e)))?;
            }
            if let Some(root) = &a.library {
                let lib = Library::open(root)?;
                images.extend(library::enroll(&lib)?);
            }
            let ep = global.registry.endpoint(None)?;
            let opts = sync::SyncOptions {
                cache: a.cache,
                now: now(a.now.as_deref())?,
                git_timeout: Duration::from_secs(a.git_timeout),
            };
            let report = sync::sync(&images, &dir, &ep, &opts).await?;
            match global.output {
                Output::Json => print_json(&report)?,
                Output::Text => {
                    for i in &report.images {
                        outln!(
                            "{:<32} {:<10} {}",
                            i.name,
                            i.status,
                            i.base_images.join(",")
                        )?;
                    }
                }
            }
            for i in report.images.iter().filter(|i| i.error.is_some()) {
                eprintln!(
                    "warning: {}: discovery failed: {}",
                    i.name,
                    i.error.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        FactoryCommand::Check(a) => {
            let ep = global.registry.endpoint(None)?;
            let opts = check::CheckOptions {
                now: now(a.now.as_deref())?,
                concurrency: a.jobs,
                exec: a.exec,
                exec_timeout: Duration::from_secs(a.exec_timeout),
            };
            if a.signing.sign_key.is_some() && !a.refresh {
                return Err(graft::Error::Input {
                    what: "--sign-key".into(),
                    reason: "signs what --refresh writes: add --refresh --library DIR".into(),
                }
                .into());
            }
            let (report, refreshed) = match (a.refresh, &a.library) {
                (true, Some(root)) => {
                    let started = super::created_time()?;
                    // A wrong password must stop the run before anything is checked or pushed.
                    let key = a.signing.load_key()?;
                    let lib = Library::open(root)?;
                    let epoch = Timestamp::from_env()?;
                    let rev = revision(
                        lib,
                        &a.build.flags(),
                        a.build.ci_branch(),
                        epoch,
                        Missing::Refuse,
                    )?;
                    let work = tempfile::tempdir()?;
                    let signing = a.signing.signing(
                        key,
                        &RunFacts {
                            build: &rev.build,
                            created: rev.created,
                            revision: &rev,
                            epoch,
                            started,
                            repo_override: None,
                        },
                    );
                    let refresh_dir = work.path().join("refresh");
                    std::fs::create_dir_all(&refresh_dir)
                        .with_context(|| format!("creating {}", refresh_dir.display()))?;
                    let request = RefreshRequest {
                        names: Vec::new(),
                        options: RefreshOptions {
                            build: rev.build.clone(),
                            created: rev.created,
                            dry_run: false,
                            jobs: a.jobs.max(1),
                            work_dir: refresh_dir,
                        },
                        signing: signing.clone(),
                        force: false,
                        clock: Box::new(move || epoch.unwrap_or_else(wall_clock)),
                    };
                    let build_dir = work.path().join("build");
                    std::fs::create_dir_all(&build_dir)
                        .with_context(|| format!("creating {}", build_dir.display()))?;
                    let build = graft::ops::build::BuildOptions {
                        signing,
                        ..a.builder.options(&rev, &build_dir, epoch, global)?
                    };
                    let r = check::check_refresh(
                        &dir,
                        &ep,
                        &opts,
                        check::LibraryRefresh {
                            library: &rev.library,
                            request,
                            build,
                            reporter: Bars::reporter(global.quiet),
                        },
                    )
                    .await?;
                    (r.check.clone(), Some(r))
                }
                _ => (check::check(&dir, &ep, &opts).await?, None),
            };
            match global.output {
                Output::Json => match &refreshed {
                    Some(r) => print_json(r)?,
                    None => print_json(&report)?,
                },
                Output::Text => {
                    outln!("{:<32} {:<10} REASON", "IMAGE", "STATUS")?;
                    for i in &report.images {
                        outln!("{:<32} {:<10} {}", i.name, i.status, i.reason)?;
                    }
                    if let Some(r) = &refreshed {
                        for b in &r.refreshed {
                            outln!("{:<32} {:<10} {}", b.name, "refreshed", b.digest)?;
                        }
                        for b in &r.built {
                            outln!("{:<32} {:<10} {}", b.name, "built", b.digest)?;
                        }
                    }
                }
            }
            if let Some(r) = &refreshed {
                for n in &r.not_refreshed {
                    eprintln!("note: {}: not refreshed: {}", n.name, n.reason);
                }
            }
            for r in report.base_images.iter().chain(&report.external_images) {
                if let Some(e) = &r.error {
                    eprintln!("error: {}: {e}", r.name);
                }
            }
            if report.failures > 0 {
                anyhow::bail!("{} check(s) or command(s) failed", report.failures);
            }
            Ok(())
        }
        FactoryCommand::Record(a) => {
            let mut reports = Vec::new();
            for p in &a.reports {
                let text = std::fs::read(p).map_err(|e| graft::Error::Input {
                    what: p.display().to_string(),
                    reason: e.to_string(),
                })?;
                let file = p.display().to_string();
                let r = record::parse_report(&file, &text)?;
                reports.push((file, r));
            }
            let opts = record::RecordOptions {
                now: now(a.now.as_deref())?,
                commit: a.commit,
                trigger: a.trigger,
            };
            let report = record::record(&dir, &reports, &opts)?;
            match global.output {
                Output::Json => print_json(&report)?,
                Output::Text => {
                    for r in &report.recorded {
                        let what = if r.added { "recorded" } else { "known" };
                        outln!("{:<32} {what:<8} {}", r.name, r.digest)?;
                    }
                }
            }
            for u in &report.unmatched {
                eprintln!("warning: {u}: no enrolled image has this repository");
            }
            Ok(())
        }
        FactoryCommand::Warehouses(a) => {
            let namespace = match (a.namespace, &a.library) {
                (Some(ns), _) => Some(ns),
                (None, Some(root)) => Library::open(root)?.settings().factory_namespace.clone(),
                (None, None) => None,
            };
            let all = warehouse::warehouses(&dir, namespace.as_deref())?;
            match &a.out_dir {
                Some(out) => {
                    std::fs::create_dir_all(out)
                        .with_context(|| format!("creating {}", out.display()))?;
                    for w in &all {
                        let path = out.join(format!("{}.yaml", w.name));
                        graft::fsutil::write_atomic(
                            &path,
                            warehouse::to_yaml(w)?.as_bytes(),
                            0o644,
                            graft::fsutil::Durability::Unsynced,
                        )?;
                        outln!("{}", path.display())?;
                    }
                }
                None => match global.output {
                    Output::Json => {
                        print_json(&all.iter().map(|w| &w.resource).collect::<Vec<_>>())?
                    }
                    Output::Text => {
                        for w in &all {
                            outln!("---\n{}", warehouse::to_yaml(w)?.trim_end())?;
                        }
                    }
                },
            }
            Ok(())
        }
    }
}
