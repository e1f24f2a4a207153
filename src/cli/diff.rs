//! `graft diff NAME --from COMMIT`: the source change of a `build:` manifest between an older
//! commit and its `git.commit`; and the source-cache flags `graft build` shares.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use graft::library::git::source::SourceCache;
use graft::library::Library;
use graft::ops::diff::diff;

use super::output::outln;
use super::{print_json, GlobalArgs, Output};

/// Where `git.repo` sources are cloned.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The source cache (bare clones and per-commit checkouts of `git.repo`). Default:
    /// `$XDG_CACHE_HOME/graft/sources`, else `~/.cache/graft/sources`.
    #[arg(long = "cache", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Time limit of each git clone or fetch, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub git_timeout: u64,
}

impl SourceArgs {
    /// The cache these flags name (the environment is read here, at the binary's edge).
    pub fn cache(&self) -> anyhow::Result<SourceCache> {
        let dir = match &self.cache {
            Some(d) => std::path::absolute(d)?,
            None => match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
                Some(x) => PathBuf::from(x).join("graft/sources"),
                None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
                    Some(h) => PathBuf::from(h).join(".cache/graft/sources"),
                    None => anyhow::bail!(
                        "no HOME or XDG_CACHE_HOME for the source cache: pass --cache DIR"
                    ),
                },
            },
        };
        Ok(SourceCache::new(
            &dir,
            Duration::from_secs(self.git_timeout.max(1)),
        ))
    }
}

/// Arguments of `graft diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The image name of a `build:` manifest with `git:`.
    pub name: String,
    /// The older commit (or any revision the repository knows) compared with `git.commit`.
    #[arg(long, value_name = "COMMIT")]
    pub from: String,
    /// The library directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub library: PathBuf,
    /// The source cache.
    #[command(flatten)]
    pub sources: SourceArgs,
}

/// Run `graft diff`: one call to [`diff`], rendered.
pub fn run(args: DiffArgs, global: &GlobalArgs) -> anyhow::Result<()> {
    let lib = Library::open(&args.library)?;
    let change = diff(&lib, &args.name, &args.from, &args.sources.cache()?)?;
    match global.output {
        Output::Json => print_json(&change)?,
        Output::Text => {
            outln!(
                "{} ({}): {}..{} under {}",
                change.manifest,
                change.repo,
                change.from,
                change.to,
                change.context
            )?;
            outln!("{}", change.stat.trim_end())?;
            if !change.patch.is_empty() {
                outln!("{}", change.patch.trim_end())?;
            }
        }
    }
    Ok(())
}
