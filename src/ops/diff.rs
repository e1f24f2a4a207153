//! `graft diff NAME --from COMMIT`: what changed in a `build:` manifest's source between an
//! older commit and its pinned `git.commit` (canfar's review step): the files under the build
//! context and the Dockerfile's patch, read in the source cache's clone.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::library::git::source::{redact, SourceCache};
use crate::library::Library;

/// What changed in one manifest's source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceChange {
    /// The manifest, relative to the library root.
    pub manifest: String,
    /// The repository, without credentials.
    pub repo: String,
    /// The older commit.
    pub from: String,
    /// The manifest's `git.commit`.
    pub to: String,
    /// The build context compared (relative to the repository).
    pub context: String,
    /// The Dockerfile (relative to the repository).
    pub dockerfile: String,
    /// Changed files under the context (and the Dockerfile), relative to the repository.
    pub files: Vec<String>,
    /// `git diff --stat`.
    #[serde(skip)]
    pub stat: String,
    /// The Dockerfile's patch.
    #[serde(skip)]
    pub patch: String,
}

/// The source change of the `build:` manifest named `name` from `from` to its `git.commit`.
pub fn diff(lib: &Library, name: &str, from: &str, cache: &SourceCache) -> Result<SourceChange> {
    let m = lib
        .manifests_named(name)
        .next()
        .ok_or_else(|| Error::Input {
            what: name.to_string(),
            reason: "is no image of the library".into(),
        })?;
    let (Some(b), Some(git)) = (&m.build, &m.git) else {
        return Err(Error::Input {
            what: m.rel.clone(),
            reason: "has no build: with git: (repo, commit): there is no source to compare".into(),
        });
    };
    let Some(to) = &git.commit else {
        return Err(Error::Input {
            what: format!("{}: git", m.rel),
            reason: "has no commit to compare with".into(),
        });
    };
    let context = b.context_path();
    let dockerfile = b.dockerfile_path();
    let d = cache
        .diff(&git.repo, &git.fetch, from, to, &context, &dockerfile)
        .map_err(|e| e.context(format!("{}: the source diff", m.rel)))?;
    let mut files = d.files;
    if !d.dockerfile_patch.is_empty() && !files.contains(&dockerfile) {
        files.push(dockerfile.clone());
    }
    Ok(SourceChange {
        manifest: m.rel.clone(),
        repo: redact(&git.repo),
        from: from.to_string(),
        to: to.clone(),
        context,
        dockerfile,
        files,
        stat: d.stat,
        patch: d.dockerfile_patch,
    })
}
