//! `graft factory sync`: images.yaml merged into the state files. Config comes from
//! images.yaml; what was found out (digests, builds, times) is kept. Each managed image's
//! Dockerfile is read from its source repository (cloned or fetched into a cache directory) and
//! its FROM lines give its bases. A failure (no such branch, no Dockerfile, no FROM) is that
//! image's `discoveryStatus: failed` with the reason; it keeps its previous bases and the
//! other images are synced as usual.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::image::append::BASE_NAME;
use crate::library::dockerfile::{Base, Dockerfile};
use crate::reference::{DockerRef, ImageRef};
use crate::store::open::{open_source, Endpoint};
use crate::timestamp::Timestamp;

use super::config::{Enrolled, LibraryBases, LibraryImage};
use super::names::{assign, display_registry, full_image, repo_url};
use super::state::{status, RebuildState, State, StateDir};
use super::tag_pattern;

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Where source repositories are cloned.
    pub cache: PathBuf,
    /// The time written into the state.
    pub now: Timestamp,
    /// Longest wait for one git command (clone, fetch).
    pub git_timeout: Duration,
}

/// What happened to one image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncedImage {
    /// Its name.
    pub name: String,
    /// Its discoveryStatus (or `removed`).
    pub status: String,
    /// Its bases' names.
    pub base_images: Vec<String>,
    /// Why discovery failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    /// Every image with a state file, enrolled or removed.
    pub images: Vec<SyncedImage>,
    /// The bases in use.
    pub base_images: Vec<String>,
    /// Bases no enrolled image uses any more (kept, marked `removedAt`).
    pub removed_base_images: Vec<String>,
    /// State files written (unchanged ones are not rewritten).
    pub written: Vec<PathBuf>,
}

/// Sync `images` into `dir`.
/// `ep` reaches registries: a library image whose Dockerfile is not at hand (its `build:` is
/// in another repository) gets its base from the base annotations of its image, one GET of
/// its root.
pub async fn sync(
    images: &[Enrolled],
    dir: &StateDir,
    ep: &Endpoint,
    opts: &SyncOptions,
) -> Result<SyncReport> {
    let mut seen = BTreeSet::new();
    for img in images {
        if !seen.insert(img.name.as_str()) {
            return Err(Error::Input {
                what: format!("image {:?}", img.name),
                reason: "enrolled twice (images.yaml and the library name the same image): names must be unique".into(),
            });
        }
    }
    let _lock = dir.lock()?;
    let old = dir.load()?;
    let now = opts.now.rfc3339();
    let mut git = Git::new(&opts.cache, opts.git_timeout);

    // Discovery, image by image: the base references, or why they are unknown.
    let mut found: BTreeMap<String, std::result::Result<Vec<DockerRef>, String>> = BTreeMap::new();
    for img in images {
        if let Some(src) = &img.source {
            found.insert(img.name.clone(), git.discover(src).await);
        } else if let Some(l) = &img.library {
            found.insert(img.name.clone(), discover_library(img, l, ep).await);
        }
    }
    // A failed image keeps the bases it had.
    let previous = |name: &str| -> Vec<DockerRef> {
        old.images
            .get(name)
            .map(|s| {
                s.base_images
                    .iter()
                    .filter_map(|b| old.bases.get(b))
                    .filter_map(|b| DockerRef::parse(&b.full_image).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut uses: BTreeMap<String, Vec<DockerRef>> = BTreeMap::new();
    for img in images.iter().filter(|i| i.is_managed()) {
        let refs = match &found[&img.name] {
            Ok(r) => r.clone(),
            Err(_) => previous(&img.name),
        };
        uses.insert(img.name.clone(), refs);
    }
    let all: BTreeMap<String, DockerRef> = uses
        .values()
        .flatten()
        .map(|r| (r.to_string(), r.clone()))
        .collect();
    let names = assign(&all);

    let mut state = State::default();
    // Bases in use.
    let mut dependents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (img, refs) in &uses {
        for r in refs {
            dependents
                .entry(names[&r.to_string()].clone())
                .or_default()
                .insert(img.clone());
        }
    }
    for (key, r) in &all {
        let name = names[key].clone();
        let mut b = old.bases.get(&name).cloned().unwrap_or_default();
        b.name = name.clone();
        b.full_image = full_image(r);
        b.registry = display_registry(&r.registry).to_string();
        b.repository = r.repository.clone();
        b.tag = r.tag.clone();
        b.repo_url = repo_url(r);
        b.allow_tags = r.tag.as_deref().map(tag_pattern);
        b.image_selection_strategy = "Digest".into();
        b.first_discovered.get_or_insert_with(|| now.clone());
        b.dependent_images = dependents
            .remove(&name)
            .unwrap_or_default()
            .into_iter()
            .collect();
        if b.full_image
            != old
                .bases
                .get(&name)
                .map_or(String::new(), |o| o.full_image.clone())
        {
            // Another reference under this name: what was known of the old one does not apply.
            b.current_digest = None;
            b.previous_digest = None;
            b.last_checked = None;
            b.last_updated = None;
        }
        b.removed_at = None;
        state.bases.insert(name, b);
    }
    let mut removed_bases = Vec::new();
    for (name, b) in &old.bases {
        if !state.bases.contains_key(name) {
            let mut b = b.clone();
            b.dependent_images.clear();
            b.removed_at.get_or_insert_with(|| now.clone());
            removed_bases.push(name.clone());
            state.bases.insert(name.clone(), b);
        }
    }

    // Images.
    let mut report_images = Vec::new();
    for img in images {
        let mut s = old.images.get(&img.name).cloned().unwrap_or_default();
        s.name = img.name.clone();
        s.enrolled_at.get_or_insert_with(|| now.clone());
        s.enrollment = enrollment(img);
        s.removed_at = None;
        let mut error = None;
        match img.is_managed() {
            false => {
                s.discovery_status = status::EXTERNAL.into();
                s.last_discovery = None;
                s.discovery_error = None;
                s.repo_url = Some(img.repo_url());
                s.allow_tags = img.allow_tags.clone();
                s.image_selection_strategy = Some(
                    img.image_selection_strategy
                        .unwrap_or(super::Strategy::SemVer)
                        .to_string(),
                );
                s.base_images = Vec::new();
                s.rebuild_state = None;
            }
            true => {
                s.repo_url = None;
                s.allow_tags = None;
                s.image_selection_strategy = None;
                s.last_discovery = Some(now.clone());
                match &found[&img.name] {
                    Ok(_) => {
                        s.discovery_status = status::SUCCESS.into();
                        s.discovery_error = None;
                    }
                    Err(e) => {
                        s.discovery_status = status::FAILED.into();
                        s.discovery_error = Some(e.clone());
                        error = Some(e.clone());
                    }
                }
                let mut bases: Vec<String> = uses[&img.name]
                    .iter()
                    .map(|r| names[&r.to_string()].clone())
                    .collect();
                bases.dedup();
                s.base_images = bases;
                let rs = s.rebuild_state.get_or_insert_with(RebuildState::default);
                if rs.status.is_empty() || rs.status == "removed" {
                    *rs = RebuildState {
                        status: "monitoring".into(),
                        ..RebuildState::default()
                    };
                }
            }
        }
        report_images.push(SyncedImage {
            name: s.name.clone(),
            status: s.discovery_status.clone(),
            base_images: s.base_images.clone(),
            error,
        });
        state.images.insert(img.name.clone(), s);
    }
    for (name, s) in &old.images {
        if !state.images.contains_key(name) {
            let mut s = s.clone();
            s.removed_at.get_or_insert_with(|| now.clone());
            s.rebuild_state = Some(RebuildState {
                status: "removed".into(),
                pending_rebuild: false,
                reason: Some("not in images.yaml".into()),
                due_at: None,
            });
            report_images.push(SyncedImage {
                name: name.clone(),
                status: "removed".into(),
                base_images: s.base_images.clone(),
                error: None,
            });
            state.images.insert(name.clone(), s);
        }
    }
    report_images.sort_by(|a, b| a.name.cmp(&b.name));
    let written = dir.write_changed(&old, &state)?;
    Ok(SyncReport {
        images: report_images,
        base_images: state
            .bases
            .iter()
            .filter(|(_, b)| b.removed_at.is_none())
            .map(|(n, _)| n.clone())
            .collect(),
        removed_base_images: removed_bases,
        written,
    })
}

/// `enrollment:` of a state file: images.yaml's config, in the seed's order.
fn enrollment(img: &Enrolled) -> serde_yaml_ng::Value {
    use serde_yaml_ng::{Mapping, Value};
    let s = |v: &str| Value::String(v.to_string());
    let mut m = Mapping::new();
    m.insert(s("registry"), s(&img.registry));
    m.insert(s("repository"), s(&img.repository));
    if let Some(src) = &img.source {
        let mut sm = Mapping::new();
        sm.insert(s("provider"), s(&src.provider));
        sm.insert(s("repo"), s(&src.repo));
        if let Some(b) = &src.branch {
            sm.insert(s("branch"), s(b));
        }
        sm.insert(s("dockerfile"), s(&src.dockerfile));
        if let Some(w) = &src.workflow {
            sm.insert(s("workflow"), s(w));
        }
        m.insert(s("source"), Value::Mapping(sm));
    }
    if let Some(l) = &img.library {
        let mut lm = Mapping::new();
        lm.insert(s("manifest"), s(&l.manifest));
        match &l.bases {
            LibraryBases::Science(t) => {
                lm.insert(s("science"), s(t));
            }
            LibraryBases::Dockerfile { shown, .. } => {
                lm.insert(s("dockerfile"), s(shown));
            }
        }
        m.insert(s("library"), Value::Mapping(lm));
    }
    m.insert(s("rebuildDelay"), s(&img.rebuild_delay.text));
    m.insert(s("autoRebuild"), Value::Bool(img.auto_rebuild));
    Value::Mapping(m)
}

/// The bases of a library image: its science image, or its Dockerfile's FROM lines, or
/// (no Dockerfile at hand) the base its image's annotations name.
async fn discover_library(
    img: &Enrolled,
    l: &LibraryImage,
    ep: &Endpoint,
) -> std::result::Result<Vec<DockerRef>, String> {
    match &l.bases {
        LibraryBases::Science(text) => super::library::science_ref(text).map(|r| vec![r]),
        LibraryBases::Dockerfile {
            path,
            shown,
            args,
            target,
        } => {
            let text = match std::fs::read(path) {
                Ok(b) if b.len() > MAX_DOCKERFILE => {
                    return Err(format!("{shown}: larger than {MAX_DOCKERFILE} bytes"))
                }
                Ok(b) => String::from_utf8(b).map_err(|_| format!("{shown}: not UTF-8"))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let at = format!("{}:{}", img.repo_url(), l.version);
                    return annotated_base(&at, ep)
                        .await
                        .map_err(|why| format!("{shown} is not in the library, and {at}: {why}"));
                }
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            let df = Dockerfile::parse(&text, args).map_err(|e| format!("{shown}: {e}"))?;
            let mut out = Vec::new();
            for stage in df.external_bases(target.as_deref()) {
                if let Base::Image { expanded, .. } = &stage.base {
                    let r = DockerRef::parse(expanded)
                        .map_err(|e| format!("{shown}: line {}: {e}", stage.line))?;
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
            }
            Ok(out)
        }
    }
}

/// The base named by `org.opencontainers.image.base.name` on the root of `reference` (one
/// GET), as refresh and build write it.
async fn annotated_base(
    reference: &str,
    ep: &Endpoint,
) -> std::result::Result<Vec<DockerRef>, String> {
    let r = DockerRef::parse(reference).map_err(|e| e.to_string())?;
    let src = open_source(&ImageRef::Docker(r), ep)
        .await
        .map_err(|e| crate::error::one_line(&e))?;
    let root = src
        .resolve()
        .await
        .map_err(|e| crate::error::one_line(&e))?;
    let name = root
        .view()
        .annotations
        .as_ref()
        .and_then(|a| a.get(BASE_NAME))
        .ok_or_else(|| format!("its root has no {BASE_NAME} annotation"))?;
    let name = name.strip_prefix("docker://").unwrap_or(name);
    DockerRef::parse(name)
        .map(|r| vec![r])
        .map_err(|e| format!("{BASE_NAME}={name:?}: {e}"))
}

/// Largest Dockerfile read.
const MAX_DOCKERFILE: usize = 1 << 20;

/// Source checkouts: each repository cloned once (bare) into the cache and fetched once per
/// sync.
struct Git {
    cache: PathBuf,
    timeout: Duration,
    fetched: HashMap<String, std::result::Result<PathBuf, String>>,
}

impl Git {
    fn new(cache: &Path, timeout: Duration) -> Git {
        Git {
            cache: cache.to_path_buf(),
            timeout,
            fetched: HashMap::new(),
        }
    }

    /// The bases of `src`'s Dockerfile, or why they cannot be known.
    async fn discover(
        &mut self,
        src: &super::config::SourceConfig,
    ) -> std::result::Result<Vec<DockerRef>, String> {
        let text = self.dockerfile(src).await?;
        let df = Dockerfile::parse(&text, &BTreeMap::new())
            .map_err(|e| format!("{}: {e}", src.dockerfile))?;
        let mut out = Vec::new();
        for stage in df.external_bases(None) {
            if let Base::Image { expanded, .. } = &stage.base {
                let r = DockerRef::parse(expanded)
                    .map_err(|e| format!("{}: line {}: {e}", src.dockerfile, stage.line))?;
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }

    async fn dockerfile(
        &mut self,
        src: &super::config::SourceConfig,
    ) -> std::result::Result<String, String> {
        let bytes = if src.provider == "local" {
            let dir = PathBuf::from(&src.repo);
            match &src.branch {
                // A local checkout as it is on disk.
                None => {
                    let path = dir.join(&src.dockerfile);
                    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?
                }
                Some(b) => {
                    let rev = format!("{b}:{}", src.dockerfile);
                    run_git(&dir, &["show", &rev], self.timeout).await?
                }
            }
        } else {
            let url = match src.provider.as_str() {
                "github" if !src.repo.contains("://") => {
                    format!("https://github.com/{}.git", src.repo)
                }
                "gitlab" if !src.repo.contains("://") => {
                    format!("https://gitlab.com/{}.git", src.repo)
                }
                _ => src.repo.clone(),
            };
            let dir = self.fetch(&url).await?;
            let rev = match &src.branch {
                Some(b) => format!("refs/heads/{b}:{}", src.dockerfile),
                None => format!("HEAD:{}", src.dockerfile),
            };
            run_git(&dir, &["show", &rev], self.timeout)
                .await
                .map_err(|e| format!("{} in {url}: {e}", src.dockerfile))?
        };
        if bytes.len() > MAX_DOCKERFILE {
            return Err(format!(
                "{}: larger than {MAX_DOCKERFILE} bytes",
                src.dockerfile
            ));
        }
        String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", src.dockerfile))
    }

    /// A bare clone of `url` in the cache, fetched in this sync.
    async fn fetch(&mut self, url: &str) -> std::result::Result<PathBuf, String> {
        if let Some(r) = self.fetched.get(url) {
            return r.clone();
        }
        let key = hex::encode(Sha256::digest(url.as_bytes()));
        let dir = self.cache.join(format!("{}.git", &key[..16]));
        let r = async {
            if dir.join("HEAD").exists() {
                run_git(
                    &dir,
                    &[
                        "fetch",
                        "--quiet",
                        "--prune",
                        "--force",
                        "origin",
                        "+refs/heads/*:refs/heads/*",
                    ],
                    self.timeout,
                )
                .await?;
                // HEAD follows the remote's default branch.
                let _ = run_git(
                    &dir,
                    &["remote", "set-head", "origin", "--auto"],
                    self.timeout,
                )
                .await;
            } else {
                std::fs::create_dir_all(&self.cache)
                    .map_err(|e| format!("creating {}: {e}", self.cache.display()))?;
                // Cloned beside its final place (git runs in the cache directory, so the
                // name is relative to it), then renamed: an interrupted clone is never taken
                // for a complete one.
                let tmp_name = format!(".{}.tmp", &key[..16]);
                let tmp = self.cache.join(&tmp_name);
                let _ = std::fs::remove_dir_all(&tmp);
                // A local path is made absolute: git runs elsewhere.
                let from = match std::fs::canonicalize(url) {
                    Ok(p) if !url.contains("://") => p.to_string_lossy().into_owned(),
                    _ => url.to_string(),
                };
                run_git(
                    &self.cache,
                    &["clone", "--quiet", "--bare", "--", &from, &tmp_name],
                    self.timeout,
                )
                .await?;
                std::fs::rename(&tmp, &dir)
                    .map_err(|e| format!("moving the clone of {url} into place: {e}"))?;
            }
            Ok(dir.clone())
        }
        .await;
        self.fetched.insert(url.to_string(), r.clone());
        r
    }
}

/// Run `git -C dir ARGS` within `timeout`; its stdout, or stderr's message.
async fn run_git(
    dir: &Path,
    args: &[&str],
    timeout: Duration,
) -> std::result::Result<Vec<u8>, String> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let what = format!("git {}", args.first().copied().unwrap_or(""));
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return Err(format!("{what}: no answer within {} s", timeout.as_secs())),
        Ok(Err(e)) => return Err(format!("{what}: cannot run git: {e}")),
        Ok(Ok(o)) => o,
    };
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg: String = msg.trim().chars().take(500).collect();
        return Err(format!("{what} failed: {msg}"));
    }
    Ok(out.stdout)
}
