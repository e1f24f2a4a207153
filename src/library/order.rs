//! The order in which the library's `build:` images are built: each Dockerfile's FROM lines
//! are read ([`super::dockerfile`]), every external base that names an image of the library is
//! mapped to its manifest, and the builds are sorted so a base builds before its children.
//!
//! Where a Dockerfile is read from: `build.path`/`build.dockerfile` relative to the library
//! root. A manifest with `git:` builds from that repository, which graft does not fetch yet:
//! when the library has the file (canfar's library is itself the `git.repo` of its runtime
//! images) it is read from there, otherwise the build is listed as "source not fetched", its
//! bases unknown, and nothing fails.
//!
//! Which base is a library image (the rule, in [`LibraryImages::find`]): the FROM reference,
//! after ARG substitution, and each reference a library image is written to are compared as
//! registry references, normalised as the builders do (`debian` is
//! `registry-1.docker.io/library/debian`, `docker.io` is `registry-1.docker.io`). The
//! repositories must be equal, and the FROM tag must be one a library image writes there: the
//! images a manifest writes are its final `{target}` with its tags, and, for a `build:`
//! manifest with a compat layer, `{science_target}` with `build.tags`. A placeholder other than
//! `{version}` in a tag template (`{build}`, `{commit}`, `{branch}`) matches any non-empty
//! text. A FROM with a digest and no tag matches when one library image writes that repository.
//! A FROM that names a library repository with a tag none writes is an external image (an
//! older build, say). References to `oci:` layouts are never matched: builders pull from
//! registries.
//!
//! The order is stable: among builds that do not depend on each other, the library's order
//! (file names). A cycle is an error naming every file in it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::reference::{DockerRef, ImageRef};

use super::dockerfile::{Base, Dockerfile};
use super::template::{self, BuildInfo, Piece};
use super::yaml::Seg;
use super::{Library, Manifest};

/// Where a build's Dockerfile and context are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceState {
    /// Read from the library.
    Library,
    /// The manifest builds from `git.repo`, which is not fetched: bases unknown.
    NotFetched,
    /// Read from the checkout of `git.commit` in the source cache.
    Git,
}

/// One base image of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseImage {
    /// The FROM line (in the Dockerfile).
    pub line: usize,
    /// The reference as written.
    pub written: String,
    /// After ARG substitution (build args first, then ARG defaults).
    pub expanded: String,
    /// `--platform=…` as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The manifest whose image this is, when it is one of the library's.
    pub library: Option<String>,
}

/// One image to build, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildStep {
    /// The image name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The manifest, relative to the library root.
    pub manifest: String,
    /// The Dockerfile, relative to the source (the library, or the git checkout).
    pub dockerfile: String,
    /// The build context, relative to the source.
    pub context: String,
    /// Whether the source was read.
    pub source: SourceState,
    /// The stage built (`build.target`); none: the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Where the built image is written, `{version}` tag (as [`Manifest::science`] says).
    pub image: String,
    /// Platforms to build.
    pub platforms: Vec<String>,
    /// External base images of the stages built, in order (empty when only `scratch`, or
    /// when the source was not read).
    pub bases: Vec<BaseImage>,
    /// The `build:` manifests that must be built first (its library bases), in build order.
    pub after: Vec<String>,
    /// The sha256 of the Dockerfile's bytes as read for this order (none when it was not
    /// read): what a build statement names, whatever the file holds later.
    #[serde(skip)]
    pub dockerfile_digest: Option<crate::oci::Digest>,
}

/// Where a problem found while ordering is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A field of a manifest.
    Field {
        /// The manifest, relative to the library root.
        manifest: String,
        /// The field.
        path: Vec<Seg>,
    },
    /// A line of a Dockerfile (relative to the library root).
    Line {
        /// The file.
        file: String,
        /// The line, from 1.
        line: usize,
    },
}

/// A problem found while ordering the builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Where.
    pub at: Location,
    /// What is wrong.
    pub message: String,
    /// A stable code: `missing-dockerfile`, `dockerfile`, `build-cycle`, `build-target`.
    pub code: &'static str,
}

/// The builds of a library, in order, and the problems that stop it.
#[derive(Debug, Clone, Default)]
pub struct BuildOrder {
    /// Every `build:` manifest, bases before children.
    pub builds: Vec<BuildStep>,
    /// Missing or unreadable Dockerfiles, cycles.
    pub issues: Vec<Issue>,
}

/// Order the `build:` manifests of `lib`. `read` gives the text of a library file (relative
/// path) or why not: the loader's reader, which keeps to the library and to a size limit.
pub fn build_order(lib: &Library, read: impl FnMut(&str) -> Result<String, String>) -> BuildOrder {
    build_order_from(lib, read, &|_| None)
}

/// [`build_order`] where a `git:` manifest whose Dockerfile is not in the library is read from
/// the checkout `checkout` gives for it (the source cache), when it gives one.
pub fn build_order_from(
    lib: &Library,
    mut read: impl FnMut(&str) -> Result<String, String>,
    checkout: &dyn Fn(&Manifest) -> Option<std::path::PathBuf>,
) -> BuildOrder {
    let images = LibraryImages::new(lib);
    let mut issues = Vec::new();
    let mut steps: Vec<BuildStep> = Vec::new();
    let mut deps: Vec<Vec<usize>> = Vec::new();
    let builds: Vec<&Manifest> = lib
        .manifests()
        .iter()
        .filter(|m| m.build.is_some())
        .collect();
    let index_of = |rel: &str| builds.iter().position(|m| m.rel == rel);
    for m in &builds {
        let Some(b) = &m.build else { continue };
        let file = b.dockerfile_path();
        let in_library = lib.root().join(&file).exists();
        let mut step = BuildStep {
            name: m.name.clone(),
            version: m.version.clone(),
            manifest: m.rel.clone(),
            dockerfile: file.clone(),
            context: b.context_path(),
            source: SourceState::Library,
            stage: b.target.clone(),
            image: m.science.image.text.clone(),
            platforms: b.platforms.iter().map(|p| p.to_string()).collect(),
            bases: Vec::new(),
            after: Vec::new(),
            dockerfile_digest: None,
        };
        let mut mine = Vec::new();
        let fetched = match m.git.is_some() && !in_library {
            true => checkout(m),
            false => None,
        };
        if m.git.is_some() && !in_library && fetched.is_none() {
            step.source = SourceState::NotFetched;
        } else {
            let text = match &fetched {
                None => read(&file),
                Some(dir) => {
                    step.source = SourceState::Git;
                    read_checkout(dir, &file)
                }
            };
            if let Ok(t) = &text {
                step.dockerfile_digest = Some(crate::oci::Digest::sha256(t.as_bytes()));
            }
            match text {
                Err(reason) => {
                    let field = match m.git.is_some() {
                        true => "path",
                        false => "dockerfile",
                    };
                    issues.push(Issue {
                        at: Location::Field {
                            manifest: m.rel.clone(),
                            path: vec![Seg::Key("build".into()), Seg::Key(field.into())],
                        },
                        message: match in_library || fetched.is_some() {
                            false => format!("the Dockerfile {file} does not exist in the library (build.path + build.dockerfile, relative to the library root when there is no git:)"),
                            true => format!("the Dockerfile {file}: {reason}"),
                        },
                        code: "missing-dockerfile",
                    });
                }
                // One parse per target platform: `FROM build-$TARGETARCH` picks per platform.
                Ok(text) => match Dockerfile::parse_each(&text, &b.args, &b.platforms) {
                    Err(e) => issues.push(Issue {
                        at: Location::Line {
                            file: file.clone(),
                            line: e.line,
                        },
                        message: format!("{} (the Dockerfile of {})", e.message, m.rel),
                        code: "dockerfile",
                    }),
                    Ok(parsed) => {
                        if let (Some(t), Some(d)) = (&b.target, parsed.first()) {
                            if d.final_stage(Some(t)).is_none() {
                                issues.push(Issue {
                                    at: Location::Field {
                                        manifest: m.rel.clone(),
                                        path: vec![
                                            Seg::Key("build".into()),
                                            Seg::Key("target".into()),
                                        ],
                                    },
                                    message: format!(
                                        "{file} has no stage named {t:?} (stages: {})",
                                        stage_names(d)
                                    ),
                                    code: "build-target",
                                });
                            }
                        }
                        let all = parsed
                            .iter()
                            .flat_map(|d| d.external_bases(b.target.as_deref()));
                        for s in all {
                            let Base::Image { written, expanded } = &s.base else {
                                continue;
                            };
                            if step
                                .bases
                                .iter()
                                .any(|b| b.line == s.line && &b.expanded == expanded)
                            {
                                continue;
                            }
                            let library = images.find(expanded).map(str::to_string);
                            if let Some(i) = library.as_deref().and_then(index_of) {
                                if !mine.contains(&i) {
                                    mine.push(i);
                                }
                            }
                            step.bases.push(BaseImage {
                                line: s.line,
                                written: written.clone(),
                                expanded: expanded.clone(),
                                platform: s.platform.clone(),
                                library,
                            });
                        }
                    }
                },
            }
        }
        steps.push(step);
        deps.push(mine);
    }
    let (order, cycle) = topological(&deps);
    if let Some(cycle) = cycle {
        let shown: Vec<String> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| {
                let line = steps[i]
                    .bases
                    .iter()
                    .find(|b| {
                        let next = cycle
                            [(cycle.iter().position(|&c| c == i).unwrap_or(0) + 1) % cycle.len()];
                        b.library.as_deref() == Some(steps[next].manifest.as_str())
                    })
                    .map(|b| format!(":{}", b.line))
                    .unwrap_or_default();
                format!("{} ({}{line})", steps[i].manifest, steps[i].dockerfile)
            })
            .collect();
        let first = cycle[0];
        issues.push(Issue {
            at: Location::Field {
                manifest: steps[first].manifest.clone(),
                path: vec![Seg::Key("build".into())],
            },
            message: format!(
                "FROM cycle: {}: each builds FROM the next, so none can be built first",
                shown[..cycle.len() + 1].join(" -> ")
            ),
            code: "build-cycle",
        });
    }
    let builds = order
        .iter()
        .map(|&i| {
            let mut s = steps[i].clone();
            s.after = order
                .iter()
                .filter(|j| deps[i].contains(j))
                .map(|&j| steps[j].manifest.clone())
                .collect();
            s
        })
        .collect();
    BuildOrder { builds, issues }
}

/// Largest Dockerfile read from a source checkout.
const MAX_DOCKERFILE: u64 = 1 << 20;

/// `file` of a source checkout, kept inside it and to a size limit.
fn read_checkout(dir: &std::path::Path, file: &str) -> Result<String, String> {
    use std::io::Read as _;
    let path = super::git::source::within(dir, file).map_err(|e| e.to_string())?;
    let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(MAX_DOCKERFILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() as u64 > MAX_DOCKERFILE {
        return Err(format!("larger than {MAX_DOCKERFILE} bytes"));
    }
    Ok(text)
}

fn stage_names(d: &Dockerfile) -> String {
    let names: Vec<&str> = d.stages.iter().filter_map(|s| s.name.as_deref()).collect();
    match names.is_empty() {
        true => "none named".into(),
        false => names.join(", "),
    }
}

/// Kahn's algorithm, stable: at each step the first (in input order) node whose
/// dependencies are all placed. What cannot be placed holds a cycle, returned in dependency
/// direction (each node depends on the next), starting from its first node in input order.
fn topological(deps: &[Vec<usize>]) -> (Vec<usize>, Option<Vec<usize>>) {
    let n = deps.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    'outer: while order.len() < n {
        for i in 0..n {
            if !placed[i] && deps[i].iter().all(|&d| placed[d]) {
                placed[i] = true;
                order.push(i);
                continue 'outer;
            }
        }
        break;
    }
    if order.len() == n {
        return (order, None);
    }
    // Every unplaced node has an unplaced dependency: walking them must repeat a node.
    let start = (0..n).find(|&i| !placed[i]).unwrap_or(0);
    let mut path = vec![start];
    let mut cur = start;
    while let Some(&next) = deps[cur].iter().find(|&&d| !placed[d]) {
        if let Some(at) = path.iter().position(|&p| p == next) {
            let mut cycle = path[at..].to_vec();
            let min = cycle
                .iter()
                .enumerate()
                .min_by_key(|(_, &c)| c)
                .map_or(0, |(k, _)| k);
            cycle.rotate_left(min);
            return (order, Some(cycle));
        }
        path.push(next);
        cur = next;
    }
    (order, Some(vec![start]))
}

/// A manifest and the tag templates it writes in one repository.
type Writer<'a> = (&'a Manifest, Vec<&'a str>);

/// Every registry image the library writes: (registry, repository) → its writers.
struct LibraryImages<'a> {
    repos: BTreeMap<(String, String), Vec<Writer<'a>>>,
}

impl<'a> LibraryImages<'a> {
    fn new(lib: &'a Library) -> LibraryImages<'a> {
        let mut repos: BTreeMap<(String, String), Vec<Writer<'a>>> = BTreeMap::new();
        let settings = lib.settings();
        for m in lib.manifests() {
            let final_repo = lib.target_text(m);
            let mut written = vec![(final_repo, lib.templates(m))];
            if let (Some(b), Some(_)) = (&m.build, m.compat_layer()) {
                let sci =
                    template::expand_target(&settings.science_target, &settings.repo, &m.name);
                written.push((sci, b.tags.iter().map(String::as_str).collect()));
            }
            for (repo, tags) in written {
                let Ok(ImageRef::Docker(d)) = format!("{repo}:x").parse::<ImageRef>() else {
                    continue;
                };
                repos
                    .entry((d.registry, d.repository))
                    .or_default()
                    .push((m, tags));
            }
        }
        LibraryImages { repos }
    }

    /// The manifest whose image `reference` (a FROM reference after substitution) names.
    fn find(&self, reference: &str) -> Option<&'a str> {
        let d = DockerRef::parse(reference).ok()?;
        let writers = self
            .repos
            .get(&(d.registry.clone(), d.repository.clone()))?;
        match (&d.tag, &d.digest) {
            (Some(tag), _) => writers
                .iter()
                .find(|(m, templates)| templates.iter().any(|t| tag_matches(t, &m.version, tag)))
                .map(|(m, _)| m.rel.as_str()),
            (None, Some(_)) => {
                let mut manifests: Vec<&str> =
                    writers.iter().map(|(m, _)| m.rel.as_str()).collect();
                manifests.dedup();
                match manifests.as_slice() {
                    [one] => Some(one),
                    _ => None,
                }
            }
            (None, None) => None,
        }
    }
}

/// Whether `tag` is one `template` writes for `version`: `{version}` is the version, other
/// placeholders any non-empty text.
fn tag_matches(template_: &str, version: &str, tag: &str) -> bool {
    let expanded = template::expand_tag(
        template_,
        version,
        &BuildInfo {
            build: None,
            commit: None,
            branch: None,
        },
    );
    let Ok(pieces) = template::parse(&expanded) else {
        return false;
    };
    matches_pieces(&pieces, tag)
}

fn matches_pieces(pieces: &[Piece<'_>], s: &str) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Piece::Text(t), rest)) => s.strip_prefix(t).is_some_and(|r| matches_pieces(rest, r)),
        Some((Piece::Placeholder(_), rest)) => {
            // One or more characters, then the rest (templates hold a few placeholders).
            s.char_indices()
                .skip(1)
                .map(|(i, _)| i)
                .chain(std::iter::once(s.len()))
                .filter(|&i| i > 0)
                .any(|i| matches_pieces(rest, &s[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn write(dir: &Path, files: &[(&str, &str)]) {
        for (p, s) in files {
            let p = dir.join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        }
    }

    fn order_of(files: &[(&str, &str)]) -> (BuildOrder, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), files);
        let v = super::super::validate(dir.path()).unwrap();
        let root = dir.path().to_path_buf();
        let o = build_order(&v.library, |rel| {
            std::fs::read_to_string(root.join(rel)).map_err(|e| e.to_string())
        });
        (o, dir)
    }

    const SETTINGS: &str = "repo: docker://reg.example:5000/lib\n";

    #[test]
    fn tags_match_templates() {
        assert!(tag_matches("{version}", "2.4", "2.4"));
        assert!(!tag_matches("{version}", "2.4", "2.5"));
        assert!(tag_matches(
            "{version}-{build}-{commit}",
            "2.4",
            "2.4-42-abc"
        ));
        assert!(!tag_matches(
            "{version}-{build}-{commit}",
            "2.4",
            "2.4--abc"
        ));
        assert!(tag_matches("3.12", "3.12", "3.12"));
        assert!(!tag_matches("{version}-{branch}", "1", "1-"));
    }

    #[test]
    fn children_build_after_their_bases_stably() {
        let (o, _d) = order_of(&[
            ("graft.yaml", SETTINGS),
            // a-child sorts first but builds FROM z-base; m-free is independent.
            (
                "manifests/a-child.yaml",
                "name: a-child\nversion: 1\nbuild: {path: images/child}\n",
            ),
            (
                "images/child/Dockerfile",
                "ARG REG=reg.example:5000\nFROM ${REG}/lib/z-base:2.0 AS b\nFROM b\nCOPY x /x\n",
            ),
            (
                "manifests/m-free.yaml",
                "name: m-free\nversion: 1\nbuild: {path: images/free}\n",
            ),
            ("images/free/Dockerfile", "FROM debian:12\n"),
            (
                "manifests/z-base.yaml",
                "name: z-base\nbuild: {path: images/base, tags: ['2.0']}\n",
            ),
            ("images/base/Dockerfile", "FROM scratch\n"),
        ]);
        assert_eq!(o.issues, vec![]);
        let names: Vec<&str> = o.builds.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["m-free", "z-base", "a-child"]);
        let child = &o.builds[2];
        assert_eq!(child.after, ["manifests/z-base.yaml"]);
        assert_eq!(child.bases.len(), 1);
        assert_eq!(child.bases[0].written, "${REG}/lib/z-base:2.0");
        assert_eq!(
            child.bases[0].library.as_deref(),
            Some("manifests/z-base.yaml")
        );
        assert_eq!(o.builds[0].bases[0].library, None);
        assert!(o.builds[1].bases.is_empty());
        assert_eq!(
            o.builds[1].image,
            "docker://reg.example:5000/lib/z-base:2.0"
        );
    }

    #[test]
    fn digests_are_of_the_bytes_read_not_of_the_files_later() {
        let manifest = "name: free\nversion: 1\nbuild: {path: images/free}\n";
        let dockerfile = "FROM debian:12\n";
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("graft.yaml", SETTINGS),
                ("manifests/free.yaml", manifest),
                ("images/free/Dockerfile", dockerfile),
            ],
        );
        let v = super::super::validate(dir.path()).unwrap();
        let root = dir.path().to_path_buf();
        let o = build_order(&v.library, |rel| {
            std::fs::read_to_string(root.join(rel)).map_err(|e| e.to_string())
        });
        // Both files edited after they were read: the digests stay those of what was read.
        std::fs::write(root.join("manifests/free.yaml"), "name: other\n").unwrap();
        std::fs::write(root.join("images/free/Dockerfile"), "FROM other\n").unwrap();
        let m = v.library.manifests_named("free").next().unwrap();
        assert_eq!(
            m.file_digest,
            crate::oci::Digest::sha256(manifest.as_bytes())
        );
        assert_eq!(
            o.builds[0].dockerfile_digest,
            Some(crate::oci::Digest::sha256(dockerfile.as_bytes()))
        );
    }

    #[test]
    fn science_target_and_tag_rules() {
        let (o, _d) = order_of(&[
            ("graft.yaml", SETTINGS),
            ("layers/c/layer.yaml", "{}\n"),
            (
                "manifests/base.yaml",
                "name: base\nversion: '2.4'\nbuild: {}\ncompat: c\n",
            ),
            ("Dockerfile", "FROM debian\n"),
            (
                "manifests/kid.yaml",
                "name: kid\nversion: 1\nbuild: {dockerfile: kid.Dockerfile}\n",
            ),
            // sci/base:2.4 is the library's; sci/base:1.0 (an older build) and the Hub are not.
            (
                "kid.Dockerfile",
                "FROM reg.example:5000/lib/sci/base:1.0\nFROM reg.example:5000/lib/sci/base:2.4\nFROM reg.example:5000/lib/base:2.4-7-abc\n",
            ),
        ]);
        assert_eq!(o.issues, vec![]);
        let kid = o.builds.iter().find(|b| b.name == "kid").unwrap();
        let libs: Vec<Option<&str>> = kid.bases.iter().map(|b| b.library.as_deref()).collect();
        assert_eq!(
            libs,
            [
                None,
                Some("manifests/base.yaml"),
                Some("manifests/base.yaml")
            ]
        );
        assert_eq!(o.builds[0].name, "base");
        assert_eq!(
            o.builds[0].image,
            "docker://reg.example:5000/lib/sci/base:2.4"
        );
        assert_eq!(o.builds[0].bases[0].expanded, "debian");
    }

    #[test]
    fn cycles_name_the_files() {
        let (o, _d) = order_of(&[
            ("graft.yaml", SETTINGS),
            (
                "manifests/a.yaml",
                "name: a\nversion: 1\nbuild: {path: a}\n",
            ),
            ("a/Dockerfile", "FROM reg.example:5000/lib/b:1\n"),
            (
                "manifests/b.yaml",
                "name: b\nversion: 1\nbuild: {path: b}\n",
            ),
            ("b/Dockerfile", "# x\nFROM reg.example:5000/lib/a:1\n"),
            (
                "manifests/c.yaml",
                "name: c\nversion: 1\nbuild: {path: c}\n",
            ),
            ("c/Dockerfile", "FROM reg.example:5000/lib/c:1\n"),
        ]);
        let messages: Vec<&str> = o.issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(messages.len(), 1, "{messages:?}");
        assert_eq!(
            messages[0],
            "FROM cycle: manifests/a.yaml (a/Dockerfile:1) -> manifests/b.yaml (b/Dockerfile:2) -> manifests/a.yaml (a/Dockerfile:1): each builds FROM the next, so none can be built first"
        );
        // The self-cycle of c is found once a and b are out of the way.
        let (o, _d) = order_of(&[
            ("graft.yaml", SETTINGS),
            (
                "manifests/c.yaml",
                "name: c\nversion: 1\nbuild: {path: c}\n",
            ),
            ("c/Dockerfile", "FROM reg.example:5000/lib/c:1\n"),
        ]);
        assert!(
            o.issues[0]
                .message
                .starts_with("FROM cycle: manifests/c.yaml (c/Dockerfile:1) -> manifests/c.yaml"),
            "{:?}",
            o.issues
        );
    }

    #[test]
    fn missing_and_unfetched_sources() {
        let (o, _d) = order_of(&[
            ("graft.yaml", SETTINGS),
            ("manifests/a.yaml", "name: a\nversion: 1\nbuild: {path: nowhere}\n"),
            (
                "manifests/g.yaml",
                "name: g\nversion: 1\ngit: {repo: 'https://example.org/x'}\nbuild: {path: images/g}\n",
            ),
            ("manifests/t.yaml", "name: t\nversion: 1\nbuild: {path: t, target: nope}\n"),
            ("t/Dockerfile", "FROM a AS one\nFROM b\n"),
            ("manifests/bad.yaml", "name: bad\nversion: 1\nbuild: {path: bad}\n"),
            ("bad/Dockerfile", "ARG X\nRUN x\n"),
        ]);
        let got: Vec<(String, &str)> = o
            .issues
            .iter()
            .map(|i| (format!("{:?}", i.at), i.code))
            .collect();
        assert_eq!(got.len(), 3, "{:?}", o.issues);
        assert!(
            o.issues[0]
                .message
                .contains("nowhere/Dockerfile does not exist"),
            "{:?}",
            o.issues
        );
        assert_eq!(
            o.issues[1].at,
            Location::Line {
                file: "bad/Dockerfile".into(),
                line: 2
            }
        );
        assert!(o.issues[2]
            .message
            .contains("no stage named \"nope\" (stages: one)"));
        let g = o.builds.iter().find(|b| b.name == "g").unwrap();
        assert_eq!(g.source, SourceState::NotFetched);
        assert!(g.bases.is_empty());
    }

    #[test]
    fn topological_is_stable() {
        assert_eq!(topological(&[vec![], vec![], vec![]]).0, [0, 1, 2]);
        assert_eq!(topological(&[vec![2], vec![], vec![1]]).0, [1, 2, 0]);
        let (order, cycle) = topological(&[vec![], vec![2], vec![1]]);
        assert_eq!(order, [0]);
        assert_eq!(cycle, Some(vec![1, 2]));
    }
}
