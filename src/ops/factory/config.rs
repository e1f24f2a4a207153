//! `images.yaml`: the factory's source of truth, read with the library's positioned YAML tree so
//! every problem names its file, line and field (`images.yaml:7:3: [1].rebuildDelay: ...`).
//!
//! The file is a top-level list (the seed's format). An entry with `source` is a managed image
//! (graft finds its bases in its Dockerfile); one without is an external image (tracked, not
//! built: `allowTags` and `imageSelectionStrategy` say which tags count). Unknown fields are
//! errors: a typo must not silently turn a setting off.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::library::problem::Problem;
use crate::library::yaml::{display_path, Kind, Node, Pos, Seg};

use super::names::is_dns_label;
use super::{Delay, Strategy};

/// An enrolled image.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrolled {
    /// Its name (a DNS-1123 label): the state file is `state/images/<name>.yaml`.
    pub name: String,
    /// Registry host (`ghcr.io`, `docker.io`, `localhost:5000`).
    pub registry: String,
    /// Repository path in the registry (`owner/backstage`).
    pub repository: String,
    /// Where a managed image is built from; `None` for an external image.
    pub source: Option<SourceConfig>,
    /// A manifest of graft's own library (`factory sync --library`): a managed image whose
    /// bases are its science image or its `build:` Dockerfile's FROM lines.
    pub library: Option<LibraryImage>,
    /// Least time between two rebuilds (a rate limit).
    pub rebuild_delay: Delay,
    /// Whether `factory check` may call a rebuild due.
    pub auto_rebuild: bool,
    /// External images: the tags that count (a regular expression).
    pub allow_tags: Option<String>,
    /// External images: how the newest tag is chosen.
    pub image_selection_strategy: Option<Strategy>,
    /// The line of the entry in images.yaml.
    #[serde(skip)]
    pub line: usize,
}

impl Enrolled {
    /// `registry/repository`.
    pub fn repo_url(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Managed (built by someone, bases watched): from images.yaml with `source`, or a
    /// library manifest.
    pub fn is_managed(&self) -> bool {
        self.source.is_some() || self.library.is_some()
    }
}

/// A library manifest enrolled as a managed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryImage {
    /// The manifest file, relative to the library (`manifests/astro.yaml`).
    pub manifest: String,
    /// Its version (the `{version}` tag its base annotations are read from).
    pub version: String,
    /// What gives its bases.
    pub bases: LibraryBases,
}

/// Where a library image's bases come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LibraryBases {
    /// `science:`: the science image, as the manifest names it.
    Science(String),
    /// `build:`: the FROM lines of this Dockerfile (an absolute path), with the manifest's
    /// build args and target stage.
    Dockerfile {
        /// The Dockerfile.
        path: std::path::PathBuf,
        /// As the manifest writes it (for the state file).
        shown: String,
        /// `build.args`.
        args: std::collections::BTreeMap<String, String>,
        /// `build.target`.
        target: Option<String>,
    },
}

/// `source:` of a managed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceConfig {
    /// `github`, `gitlab`, `git` or `local`: how `repo` is reached.
    pub provider: String,
    /// `owner/repo` (github, gitlab), a git URL, or a local path.
    pub repo: String,
    /// The branch to read the Dockerfile from (default: the remote's HEAD).
    pub branch: Option<String>,
    /// The Dockerfile's path in the repository (default `Dockerfile`).
    pub dockerfile: String,
    /// The CI workflow that builds it (for `--exec` commands; graft does not use it).
    pub workflow: Option<String>,
}

/// images.yaml has problems: each with file, line, column and field.
#[derive(Debug, Clone)]
pub struct InvalidImages {
    /// The file.
    pub file: PathBuf,
    /// What is wrong, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidImages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "{} has {n} problem{}:",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidImages {}

const IMAGE_FIELDS: &[&str] = &[
    "name",
    "registry",
    "repository",
    "source",
    "rebuildDelay",
    "autoRebuild",
    "allowTags",
    "imageSelectionStrategy",
];
const SOURCE_FIELDS: &[&str] = &["provider", "repo", "branch", "dockerfile", "workflow"];
const PROVIDERS: &[&str] = &["github", "gitlab", "git", "local"];

/// Parse and check images.yaml's text; `file` names it in problems.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Enrolled>, InvalidImages> {
    let shown = file.display().to_string();
    let mut problems = Vec::new();
    let invalid = |problems: Vec<Problem>| InvalidImages {
        file: file.to_path_buf(),
        problems,
    };
    let root = match Node::parse(text) {
        Ok(r) => r,
        Err(errors) => {
            return Err(invalid(
                errors
                    .into_iter()
                    .map(|e| Problem::error(&shown, e.pos, "(root)", e.message, "syntax"))
                    .collect(),
            ))
        }
    };
    let items: &[Node] = match &root.kind {
        Kind::Seq(items) => items,
        _ if root.is_null() => &[],
        _ => {
            return Err(invalid(vec![Problem::error(
                &shown,
                root.pos,
                "(root)",
                "images.yaml is a list of images (`- name: …`)",
                "schema",
            )]))
        }
    };
    let mut out: Vec<Enrolled> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let mut c = Checker {
            file: &shown,
            problems: &mut problems,
        };
        if let Some(e) = c.image(item, &[Seg::Index(i)]) {
            if let Some(first) = out.iter().find(|o| o.name == e.name) {
                c.error(
                    item.get("name").map_or(item.pos, |n| n.pos),
                    &[Seg::Index(i), Seg::Key("name".into())],
                    format!(
                        "the name {:?} is enrolled twice (first on line {})",
                        e.name, first.line
                    ),
                );
            } else {
                out.push(e);
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        problems.sort();
        Err(invalid(problems))
    }
}

struct Checker<'a> {
    file: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, path: &[Seg], message: impl Into<String>) {
        self.problems.push(Problem::error(
            self.file,
            pos,
            display_path(path),
            message,
            "schema",
        ));
    }

    /// The fields of a mapping, with unknown ones reported; `None` when it is not a mapping.
    fn map<'n>(&mut self, node: &'n Node, path: &[Seg], known: &[&str]) -> Option<&'n Node> {
        let Kind::Map(entries) = &node.kind else {
            self.error(node.pos, path, "expected a mapping");
            return None;
        };
        for (k, _) in entries {
            if !known.contains(&k.text.as_str()) {
                let mut p = path.to_vec();
                p.push(Seg::Key(k.text.clone()));
                self.error(
                    k.pos,
                    &p,
                    format!("unknown field (known: {})", known.join(", ")),
                );
            }
        }
        Some(node)
    }

    fn string(&mut self, node: &Node, path: &[Seg], key: &str, required: bool) -> Option<String> {
        let mut p = path.to_vec();
        p.push(Seg::Key(key.into()));
        match node.get(key) {
            None => {
                if required {
                    self.error(node.pos, &p, "missing (required)");
                }
                None
            }
            Some(v) => match &v.kind {
                Kind::Scalar { text, .. } if !v.is_null() && !text.is_empty() => Some(text.clone()),
                _ => {
                    self.error(v.pos, &p, "expected a non-empty string");
                    None
                }
            },
        }
    }

    fn pos_of(node: &Node, key: &str) -> Pos {
        node.get(key).map_or(node.pos, |v| v.pos)
    }

    fn image(&mut self, node: &Node, path: &[Seg]) -> Option<Enrolled> {
        let node = self.map(node, path, IMAGE_FIELDS)?;
        let before = self.problems.len();
        let at = |k: &str| {
            let mut p = path.to_vec();
            p.push(Seg::Key(k.into()));
            p
        };
        let name = self.string(node, path, "name", true);
        if let Some(n) = &name {
            if !is_dns_label(n) {
                self.error(
                    Self::pos_of(node, "name"),
                    &at("name"),
                    format!("{n:?} is not a valid name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters (a Kubernetes DNS-1123 label)"),
                );
            }
        }
        let registry = self.string(node, path, "registry", true);
        if let Some(r) = &registry {
            if r.contains('/') || r.contains("://") {
                self.error(
                    Self::pos_of(node, "registry"),
                    &at("registry"),
                    format!("{r:?} is not a registry host (`ghcr.io`, `localhost:5000`)"),
                );
            }
        }
        let repository = self.string(node, path, "repository", true);
        if let Some(r) = &repository {
            if let Err(e) = crate::reference::validate_repository(r) {
                self.error(Self::pos_of(node, "repository"), &at("repository"), e);
            }
        }
        let source = match node.get("source") {
            None => None,
            Some(s) => self.source(s, &at("source")),
        };
        let rebuild_delay = match self.string(node, path, "rebuildDelay", false) {
            None => Some(Delay::zero()),
            Some(text) => match Delay::parse(&text) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(Self::pos_of(node, "rebuildDelay"), &at("rebuildDelay"), e);
                    None
                }
            },
        };
        let auto_rebuild = match node.get("autoRebuild") {
            None => false,
            Some(v) => match (&v.kind, v.text()) {
                (Kind::Scalar { plain: true, .. }, Some("true")) => true,
                (Kind::Scalar { plain: true, .. }, Some("false")) => false,
                _ => {
                    self.error(v.pos, &at("autoRebuild"), "expected true or false");
                    false
                }
            },
        };
        let allow_tags = self.string(node, path, "allowTags", false);
        if let Some(re) = &allow_tags {
            if let Err(e) = regex::Regex::new(re) {
                self.error(
                    Self::pos_of(node, "allowTags"),
                    &at("allowTags"),
                    format!("not a regular expression: {e}"),
                );
            }
        }
        let strategy = match self.string(node, path, "imageSelectionStrategy", false) {
            None => None,
            Some(s) => match Strategy::parse(&s) {
                Some(st) => Some(st),
                None => {
                    self.error(
                        Self::pos_of(node, "imageSelectionStrategy"),
                        &at("imageSelectionStrategy"),
                        format!("{s:?}: expected one of Digest, Lexical, NewestBuild, SemVer"),
                    );
                    None
                }
            },
        };
        if source.is_none() && node.get("source").is_none() {
            // External: a Digest strategy follows one tag, which allowTags must name exactly.
            if strategy == Some(Strategy::Digest)
                && allow_tags.as_deref().and_then(super::exact_tag).is_none()
            {
                self.error(
                    Self::pos_of(node, "allowTags"),
                    &at("allowTags"),
                    "the Digest strategy follows one tag: allowTags must be `^TAG$`",
                );
            }
        }
        if self.problems.len() != before {
            return None;
        }
        Some(Enrolled {
            name: name?,
            registry: registry?,
            repository: repository?,
            source,
            library: None,
            rebuild_delay: rebuild_delay?,
            auto_rebuild,
            allow_tags,
            image_selection_strategy: strategy,
            line: node.pos.line,
        })
    }

    fn source(&mut self, node: &Node, path: &[Seg]) -> Option<SourceConfig> {
        let node = self.map(node, path, SOURCE_FIELDS)?;
        let provider = self.string(node, path, "provider", true);
        if let Some(p) = &provider {
            if !PROVIDERS.contains(&p.as_str()) {
                let mut at = path.to_vec();
                at.push(Seg::Key("provider".into()));
                self.error(
                    Self::pos_of(node, "provider"),
                    &at,
                    format!("{p:?}: expected one of {}", PROVIDERS.join(", ")),
                );
            }
        }
        let repo = self.string(node, path, "repo", true);
        let branch = self.string(node, path, "branch", false);
        let dockerfile = self
            .string(node, path, "dockerfile", false)
            .unwrap_or_else(|| "Dockerfile".into());
        let workflow = self.string(node, path, "workflow", false);
        Some(SourceConfig {
            provider: provider?,
            repo: repo?,
            branch,
            dockerfile,
            workflow,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "\
- name: myapp
  registry: ghcr.io
  repository: owner/myapp
  source:
    provider: github
    repo: owner/repo
    branch: main
    dockerfile: apps/myapp/Dockerfile
    workflow: build.yml
  rebuildDelay: 7d
  autoRebuild: true
- name: postgres
  registry: docker.io
  repository: library/postgres
  allowTags: ^16-alpine$
  imageSelectionStrategy: Lexical
  rebuildDelay: 30d
  autoRebuild: false
";

    #[test]
    fn reads_the_seed_examples() {
        let images = parse(Path::new("images.yaml"), SEED).unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].rebuild_delay.seconds, 7 * 86_400);
        assert!(images[0].auto_rebuild);
        assert_eq!(
            images[0].source.as_ref().unwrap().dockerfile,
            "apps/myapp/Dockerfile"
        );
        assert!(images[1].source.is_none());
        assert_eq!(images[1].image_selection_strategy, Some(Strategy::Lexical));
    }

    #[test]
    fn problems_name_file_line_and_field() {
        let text = SEED
            .replace("  branch: main", "  brunch: main")
            .replace("30d", "30 days");
        let e = parse(Path::new("images.yaml"), &text).unwrap_err();
        let shown: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("images.yaml:7:5: [0].source.brunch: unknown field"));
        assert!(shown[1].starts_with("images.yaml:17:17: [1].rebuildDelay: "));
        assert!(shown[1].contains("30 days"), "{shown:?}");
    }

    #[test]
    fn names_and_duplicates() {
        let text = "- {name: Bad_Name, registry: r.io, repository: a/b}\n- {name: a, registry: r.io, repository: a/b}\n- {name: a, registry: r.io, repository: a/c}\n";
        let e = parse(Path::new("i.yaml"), text).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].message.contains("DNS-1123"));
        assert!(e.problems[1].message.contains("enrolled twice"));
    }
}
