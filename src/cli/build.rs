//! `graft build`: build the library's `build:` images with buildah, in dependency order, test
//! them, write them (index and tags by graft), and refresh those with a compat layer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use graft::builder::binfmt::{host_platform, BINFMT_DIR};
use graft::builder::buildah::Buildah;
use graft::library::Library;
use graft::ops::bake::{from_metadata, FromMetadataOptions};
use graft::ops::build::{build, BuildOptions, BuildReport};
use graft::ops::build_sign::Clock;
use graft::ops::plan::{changed_since, revision, Missing};
use graft::timestamp::Timestamp;

use super::output::outln;
use super::progress::Bars;
use super::{print_json, BuildArgs, GlobalArgs, Output};

/// Arguments of `graft build`.
#[derive(Debug, Args)]
pub struct BuildCmdArgs {
    /// Build only the manifests with these image names (default: every `build:` manifest);
    /// their library bases are not rebuilt: they are used at their current digest.
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
    /// Print the ordered builds and where each image would go; build and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Concurrent blob transfers.
    #[arg(long, short = 'j', default_value_t = 4)]
    pub jobs: usize,
    /// The builder (buildah), its storage and time limits.
    #[command(flatten)]
    pub builder: BuilderArgs,
    /// Do not build: continue after `docker buildx bake --push --metadata-file FILE` run on
    /// `graft plan --bake`'s file. Each target's pushed digest is checked at its tags in the
    /// registry, then images with compat are refreshed. NAMES select targets (default: all).
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub from_metadata: Option<PathBuf>,
    /// Signing and provenance of every image written (the built image with the build
    /// statement; with compat, the final image with the refresh's too).
    #[command(flatten)]
    pub signing: super::sign::SigningArgs,
    /// Build only the images that `git diff REV..HEAD` of the library affects (Dockerfile,
    /// build context, manifest, compat layers) and the images built FROM them; an unchanged
    /// base is used at its existing tag, pinned by digest.
    #[arg(long, value_name = "REV", conflicts_with = "from_metadata")]
    pub changed_since: Option<String>,
}

/// buildah and what it runs with: `graft build`, `graft factory check --refresh`.
#[derive(Debug, Args)]
pub struct BuilderArgs {
    /// The buildah program.
    #[arg(long, value_name = "PATH", default_value = "buildah")]
    pub buildah: PathBuf,
    /// buildah's storage directory (kept between runs: a cache). Default: a temporary
    /// directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    pub storage: Option<PathBuf>,
    /// buildah's storage driver.
    #[arg(long, value_name = "DRIVER", default_value = "vfs")]
    pub storage_driver: String,
    /// Time limit of each build, push or pull, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub build_timeout: u64,
    /// Time limit of each test inside an image (build.test, checks; `graft test`'s --cmd), in
    /// seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub test_timeout: u64,
    /// Where the kernel lists binfmt_misc emulators (for tests).
    #[arg(long, value_name = "DIR", default_value = BINFMT_DIR, hide = true)]
    pub binfmt_dir: PathBuf,
    /// Where `git.repo` sources are cloned.
    #[command(flatten)]
    pub sources: super::diff::SourceArgs,
}

impl BuilderArgs {
    /// The build options of a run: `work` holds the builder's layouts, and buildah's storage
    /// unless `--storage` names one. Provenance's clock is `epoch` (`SOURCE_DATE_EPOCH`) when
    /// set, else the wall clock: read here, at the binary's edge.
    pub fn options(
        &self,
        rev: &graft::ops::plan::Revision,
        work: &std::path::Path,
        epoch: Option<graft::timestamp::Timestamp>,
        global: &GlobalArgs,
    ) -> anyhow::Result<BuildOptions> {
        Ok(BuildOptions {
            build: rev.build.clone(),
            created: rev.created,
            dry_run: false,
            jobs: 4,
            work_dir: work.to_path_buf(),
            buildah: self.buildah(work, global)?,
            test_timeout: self.test_timeout(),
            host: host_platform(),
            binfmt_dir: self.binfmt_dir.clone(),
            sources: self.sources.cache()?,
            signing: None,
            clock: Clock(Arc::new(move || epoch.unwrap_or_else(super::wall_clock))),
            changes: None,
            base_pins: Vec::new(),
        })
    }

    /// buildah with its storage: `--storage`, else `work/storage`.
    pub fn buildah(&self, work: &std::path::Path, global: &GlobalArgs) -> anyhow::Result<Buildah> {
        // buildah's --root wants an absolute path.
        let storage = match &self.storage {
            Some(s) => std::path::absolute(s)?,
            None => work.join("storage"),
        };
        Ok(Buildah {
            program: self.buildah.clone(),
            root: storage.join("root"),
            runroot: storage.join("run"),
            storage_driver: self.storage_driver.clone(),
            tls_verify: global.registry.tls_verify,
            timeout: Duration::from_secs(self.build_timeout.max(1)),
        })
    }

    /// The time limit of each test inside an image.
    pub fn test_timeout(&self) -> Duration {
        Duration::from_secs(self.test_timeout.max(1))
    }
}

/// Run `graft build`: one call to [`build`], rendered.
pub async fn run(args: BuildCmdArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let started = super::created_time()?;
    // Load the key first: a wrong password must stop the run before anything is built.
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
    let changes = match &args.changed_since {
        Some(since) => {
            let c = changed_since(&rev.library, rev.repo.as_ref(), since)?;
            if !global.quiet {
                eprintln!(
                    "changed since {since}: {} of {} image(s) affected (their children build too)",
                    c.images.len(),
                    rev.library.manifests().len()
                );
                for a in &c.images {
                    for r in &a.reasons {
                        eprintln!("  {}: {}", a.manifest, r.message);
                    }
                }
            }
            Some(c)
        }
        None => None,
    };
    let signing = args.signing.signing(
        key,
        &super::sign::RunFacts {
            build: &rev.build,
            created: rev.created,
            revision: &rev,
            epoch,
            started,
            repo_override: args.repo.as_deref(),
        },
    );
    let work = tempfile::tempdir()?;
    let options = BuildOptions {
        dry_run: args.dry_run,
        jobs: args.jobs.max(1),
        signing: signing.clone(),
        changes,
        ..args.builder.options(&rev, work.path(), epoch, global)?
    };
    let ep = global.registry.endpoint(None)?;
    let reporter = Bars::reporter(global.quiet);
    if let Some(file) = &args.from_metadata {
        let opts = FromMetadataOptions {
            build: rev.build.clone(),
            created: rev.created,
            jobs: args.jobs.max(1),
            work_dir: work.path().to_path_buf(),
            signing,
            clock: options.clock.clone(),
        };
        let report = from_metadata(&rev.library, file, &args.names, &opts, &ep, &reporter).await?;
        match global.output {
            Output::Json => print_json(&report)?,
            Output::Text => print_text(&report)?,
        }
        return Ok(());
    }
    let report = build(&rev.library, &args.names, &options, &ep, &reporter).await?;
    match global.output {
        Output::Json => print_json(&report)?,
        Output::Text => print_text(&report)?,
    }
    Ok(())
}

fn print_text(r: &BuildReport) -> anyhow::Result<()> {
    let verb = if r.dry_run { "would write" } else { "wrote" };
    if r.dry_run {
        outln!("build order")?;
        for (i, s) in r.order.iter().enumerate() {
            let after = match s.after.is_empty() {
                true => String::new(),
                false => format!(" (after {})", s.after.join(", ")),
            };
            outln!(
                "  {}. {} {} [{}] {}{after}",
                i + 1,
                s.name,
                s.version,
                s.platforms.join(", "),
                s.dockerfile
            )?;
        }
    }
    for img in &r.images {
        match &img.digest {
            Some(d) => outln!("{} {} {d}", img.name, img.version)?,
            None => outln!("{} {}", img.name, img.version)?,
        }
        for b in &img.bases {
            let how = if b.built_now {
                "built now"
            } else {
                "not rebuilt"
            };
            outln!("  base     {}@{} ({how})", b.reference, b.digest)?;
        }
        for p in &img.platforms {
            outln!("  {:<16} {}", p.platform, p.digest)?;
        }
        for t in &img.tests {
            outln!("  tested   {} ({})", t.command, t.platform)?;
        }
        if let Some(s) = &img.tests_skipped {
            outln!("  tests    not run: {s}")?;
        }
        for reference in &img.references {
            outln!("  {verb} {reference}")?;
        }
        if let Some(s) = &img.signing {
            signed_lines(s)?;
        }
        if let Some(f) = &img.refresh {
            outln!("  compat   {} {}", f.compat.join(" + "), f.digest)?;
            for t in &img.refresh_tests {
                outln!("  tested   {} ({}, refreshed image)", t.command, t.platform)?;
            }
            for reference in &f.references {
                outln!("  {verb} {reference}")?;
            }
            if let Some(s) = &f.signing {
                signed_lines(s)?;
            }
        }
    }
    Ok(())
}

/// One line per digest signed, and whether it carries provenance.
fn signed_lines(s: &graft::ops::refresh::Signed) -> anyhow::Result<()> {
    for d in &s.signed {
        let att = match s.attested.contains(d) {
            true => " + provenance",
            false => "",
        };
        outln!("  signed   {d}{att}")?;
    }
    Ok(())
}
