//! Loading a library: every file is parsed, checked against its schema, turned into typed
//! values and checked for meaning; then the library as a whole is checked (compat layers and
//! includes exist, no include cycles, no two manifests producing the same reference). Every
//! problem is collected: nothing stops at the first one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::fsutil::{open_regular_nofollow, OpenRefused};

use crate::oci::{Digest, Platform};
use crate::reference::{validate_tag, ImageRef};

use super::model::*;
use super::problem::Problem;
use super::schema::{self, FileKind};
use super::template::{self, BuildInfo, TAG_PLACEHOLDERS, TARGET_PLACEHOLDERS};
use super::yaml::{display_path, Node, Pos, Seg};
use super::Library;

/// Where each loaded file's tree is, for positions of cross-file problems.
pub(crate) struct Loader {
    root: PathBuf,
    /// The directory every file read must really be in (symlinks resolved): the library root
    /// without symlinks. A library from elsewhere must not make graft read, echo or pack
    /// files outside it.
    boundary: PathBuf,
    /// The layers directory relative to `root` (`layers`, or empty when `root` is it).
    layers_dir: String,
    pub(crate) problems: Vec<Problem>,
    nodes: BTreeMap<String, Node>,
    /// Every `compat` named by a manifest file, even one that did not load.
    compat_refs: BTreeSet<String>,
    /// The sha256 of each file parsed, of the bytes read ([`Manifest::file_digest`]).
    digests: BTreeMap<String, Digest>,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn text_of(node: &Node, k: &str) -> Option<String> {
    node.get(k).and_then(Node::text).map(str::to_string)
}

fn string_map(node: Option<&Node>) -> BTreeMap<String, String> {
    node.map(|n| {
        n.entries()
            .filter_map(|(k, v)| v.text().map(|t| (k.text.clone(), t.to_string())))
            .collect()
    })
    .unwrap_or_default()
}

fn string_list(node: Option<&Node>) -> Vec<String> {
    node.map(|n| {
        n.items()
            .iter()
            .filter_map(|i| i.text().map(str::to_string))
            .collect()
    })
    .unwrap_or_default()
}

/// Most bytes of one library file: graft's own are a few KiB; this keeps a huge file (or a
/// device) from filling memory.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The problem code of a file or directory that leads outside the library.
const OUTSIDE: &str = "outside-library";

/// Resolve a reference's relative layout path against the library root.
pub(crate) fn locate(root: &Path, text: &str) -> Result<Located, crate::Error> {
    let image: ImageRef = text.parse()?;
    let image = match image {
        ImageRef::Layout(mut l) if l.path.is_relative() => {
            l.path = root.join(&l.path);
            ImageRef::Layout(l)
        }
        ImageRef::Archive(mut l) if l.path.is_relative() => {
            l.path = root.join(&l.path);
            ImageRef::Archive(l)
        }
        other => other,
    };
    Ok(Located {
        text: text.to_string(),
        image,
    })
}

/// Whether a reference names a tag or digest explicitly (a bare docker reference means
/// `latest`, a bare layout its only image: neither says which image was meant).
fn names_version(text: &str) -> bool {
    if let Some(rest) = text.strip_prefix("docker://") {
        let last = rest.rsplit('/').next().unwrap_or(rest);
        return last.contains(':') || rest.contains('@');
    }
    let rest = text
        .strip_prefix("oci-archive:")
        .or_else(|| text.strip_prefix("oci:"))
        .unwrap_or(text);
    rest.contains(':')
}

/// The default breadcrumb name of a science image: the last element of its repository path
/// or layout directory.
pub(crate) fn default_science_target(image: &ImageRef) -> String {
    match image {
        ImageRef::Docker(d) => d
            .repository
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        ImageRef::Layout(l) | ImageRef::Archive(l) => {
            let name = l
                .path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            match matches!(image, ImageRef::Archive(_)) {
                true => name
                    .strip_suffix(".tar")
                    .map(str::to_string)
                    .unwrap_or(name),
                false => name,
            }
        }
    }
}

fn is_name(s: &str) -> bool {
    // Same grammar as the schemas' `name`: lowercase alphanumerics with separators.
    let parts_ok = |sep_ok: &dyn Fn(&str) -> bool| -> bool {
        let mut cur = String::new();
        let mut seps = Vec::new();
        let mut words = Vec::new();
        let mut sep = String::new();
        for c in s.chars() {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                if !sep.is_empty() {
                    seps.push(std::mem::take(&mut sep));
                }
                cur.push(c);
            } else {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                } else if words.is_empty() {
                    return false;
                }
                sep.push(c);
            }
        }
        if !cur.is_empty() {
            words.push(cur);
        }
        sep.is_empty() && !words.is_empty() && seps.iter().all(|s| sep_ok(s))
    };
    parts_ok(&|s: &str| s == "." || s == "_" || s == "__" || s.chars().all(|c| c == '-'))
}

/// Check an absolute image path; the message says what is wrong.
fn check_image_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!(
            "{p:?} is not an absolute path; write it as it is in the image, e.g. /{}",
            p.trim_start_matches("./")
        ));
    }
    if p.trim_end_matches('/').is_empty() {
        return Err("the image root / itself cannot be named here".into());
    }
    if p.split('/').any(|c| c == "." || c == "..") {
        return Err(format!("{p:?} must not contain '.' or '..' components"));
    }
    if p.contains("//") {
        return Err(format!("{p:?} contains an empty path component"));
    }
    // A `.wh.` name in a layer is a whiteout: `/.wh..opq` would hide the whole base image.
    if p.split('/')
        .any(|c| c.starts_with(crate::layer::WHITEOUT_PREFIX))
    {
        return Err(format!(
            "{p:?}: names starting with \".wh.\" are reserved for whiteouts; name the path to remove itself"
        ));
    }
    Ok(())
}

/// Whether `c` is a full commit hash (SHA-1 or SHA-256, lowercase hex), as `git.commit` needs.
fn is_commit(c: &str) -> bool {
    matches!(c.len(), 40 | 64) && c.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Check a `build:` path: relative, and never leaving the source through `..`.
fn check_source_path(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        return Err(format!(
            "{p:?} is absolute; build paths are relative to the source (the git checkout, else the library)"
        ));
    }
    if p.split('/').any(|c| c == "..") {
        return Err(format!(
            "{p:?} leads outside the source through '..'; build paths stay inside it"
        ));
    }
    Ok(())
}

/// Where the science image of a `build:` manifest goes, as a reference with the `{version}`
/// tag: `{science_target}:{version}` when the manifest has a compat layer (the refresh reads
/// it there), else the final `{target}:{version}`. `repo` as the settings say now (`--repo`
/// changes it).
pub(crate) fn built_science(
    root: &Path,
    settings: &Settings,
    name: &str,
    version: &str,
    with_compat: bool,
) -> Result<Located, crate::Error> {
    let template_ = match with_compat {
        true => &settings.science_target,
        false => &settings.target,
    };
    let repo = template::expand_target(template_, &settings.repo, name);
    locate(root, &format!("{repo}:{version}"))
}

impl Loader {
    pub(crate) fn new(root: &Path) -> Loader {
        Loader {
            root: root.to_path_buf(),
            boundary: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
            layers_dir: "layers".to_string(),
            problems: Vec::new(),
            nodes: BTreeMap::new(),
            compat_refs: BTreeSet::new(),
            digests: BTreeMap::new(),
        }
    }

    /// Look for layers in `rel` (relative to the root; empty: the root itself).
    pub(crate) fn with_layers_dir(mut self, rel: &str) -> Loader {
        self.layers_dir = rel.to_string();
        // The layers directory named on the command line is trusted wherever it really is;
        // its parent is the library when it is called `layers`, as in `validate`.
        if let Ok(real) = std::fs::canonicalize(self.root.join(rel)) {
            self.boundary = match (rel.is_empty(), real.parent()) {
                (false, Some(parent)) => parent.to_path_buf(),
                _ => real,
            };
        }
        self
    }

    /// Where `rel` really is (symlinks resolved), if that is inside the library. The message
    /// says why not; it never names where an outside symlink leads.
    pub(crate) fn real(&self, rel: &str) -> Result<PathBuf, String> {
        let real = std::fs::canonicalize(self.root.join(rel))
            .map_err(|e| format!("cannot read {rel}: {e}"))?;
        if real.starts_with(&self.boundary) {
            Ok(real)
        } else {
            Err(format!(
                "{rel} leads outside the library through a symlink; graft reads only files inside the library"
            ))
        }
    }

    /// Record a problem if the directory `rel` exists but leads outside the library; whether
    /// it may be listed.
    pub(crate) fn dir_inside(&mut self, rel: &str) -> bool {
        if std::fs::symlink_metadata(self.root.join(rel)).is_err() {
            return true;
        }
        match self.real(rel) {
            Ok(_) => true,
            Err(m) => {
                self.problems
                    .push(Problem::error(rel, Pos::START, "(root)", m, OUTSIDE));
                false
            }
        }
    }

    /// The text of the library file `rel`: a regular file inside the library, at most
    /// [`MAX_FILE_BYTES`], UTF-8. The error's message and code.
    fn read_text(&self, rel: &str) -> Result<String, (String, &'static str)> {
        use std::io::Read;
        use std::os::unix::fs::FileTypeExt;
        let real = self.real(rel).map_err(|m| {
            let code = if m.contains("outside") { OUTSIDE } else { "io" };
            (m, code)
        })?;
        let io = |e: std::io::Error| (format!("cannot read the file: {e}"), "io");
        let not_file = |t: std::fs::FileType| {
            let what = if t.is_dir() {
                "a directory"
            } else if t.is_fifo() {
                "a fifo"
            } else if t.is_socket() {
                "a socket"
            } else if t.is_block_device() || t.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            };
            (
                format!("is {what}; a library file must be a regular file"),
                "io",
            )
        };
        // Checked before opening, on the resolved path (no link left in it), for the message;
        // then opened without following a link or blocking on a fifo swapped in since, and
        // checked again on the open file.
        let meta = std::fs::symlink_metadata(&real).map_err(io)?;
        if !meta.is_file() {
            return Err(not_file(meta.file_type()));
        }
        let file = match open_regular_nofollow(&real) {
            Ok(file) => file,
            Err(OpenRefused::Io(e)) => return Err(io(e)),
            Err(OpenRefused::Refused(reason)) => {
                return Err((
                    format!("is {reason}; a library file must be a regular file"),
                    "io",
                ))
            }
        };
        let meta = file.metadata().map_err(io)?;
        let too_big = || {
            (
                format!(
                    "the file is larger than {} MiB; library files are small YAML documents",
                    MAX_FILE_BYTES >> 20
                ),
                "io",
            )
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(too_big());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_big());
        }
        String::from_utf8(bytes).map_err(|e| {
            (
                format!(
                    "not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
                "syntax",
            )
        })
    }

    /// `layers/<name>/layer.yaml`, relative to the root.
    pub(crate) fn layer_rel(&self, name: &str) -> String {
        self.layer_dir_rel(name) + "/layer.yaml"
    }

    fn layer_dir_rel(&self, name: &str) -> String {
        if self.layers_dir.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.layers_dir)
        }
    }

    /// Record an error at `path` of `rel`, unless the schema already found that field wrong
    /// (its message is the more precise) or the same check already reported it.
    fn error(&mut self, rel: &str, path: &[Seg], message: impl Into<String>, code: &'static str) {
        let shown = display_path(path);
        let covered = |p: &Problem| {
            p.file == rel
                && p.path == shown
                && (matches!(p.code, "schema" | "syntax") || p.code == code)
                && code != "duplicate-reference"
        };
        if self.problems.iter().any(covered) {
            return;
        }
        let pos = self.nodes.get(rel).map_or(Pos::START, |n| n.locate(path));
        self.problems
            .push(Problem::error(rel, pos, shown, message, code));
    }

    /// Read, parse and schema-check one file; `None` if it cannot be read or parsed.
    /// Schema problems are recorded but the tree is still returned for the lenient typed
    /// pass (so meaning checks run on the rest of the file).
    fn read(&mut self, rel: &str, kind: FileKind) -> Option<Node> {
        let text = match self.read_text(rel) {
            Ok(t) => t,
            Err((message, code)) => {
                self.problems
                    .push(Problem::error(rel, Pos::START, "(root)", message, code));
                return None;
            }
        };
        self.digests
            .insert(rel.to_string(), Digest::sha256(text.as_bytes()));
        let mut node = match Node::parse(&text) {
            Ok(n) => n,
            Err(errors) => {
                for e in errors {
                    self.problems
                        .push(Problem::error(rel, e.pos, "(root)", e.message, "syntax"));
                }
                return None;
            }
        };
        // An empty layer.yaml is a layer with nothing but files/.
        if kind == FileKind::Layer && node.is_null() {
            node.kind = super::yaml::Kind::Map(Vec::new());
        }
        self.problems.extend(schema::check(kind, rel, &node));
        self.nodes.insert(rel.to_string(), node.clone());
        Some(node)
    }

    /// The `platforms` of `node`, which is at `prefix` in the file.
    fn platforms(&mut self, rel: &str, node: &Node, prefix: &[Seg]) -> Vec<Platform> {
        let mut out = Vec::new();
        for (i, item) in node
            .get("platforms")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(t) = item.text() else { continue };
            match t.parse::<Platform>() {
                Ok(p) => out.push(p),
                Err(e) => {
                    let mut path = prefix.to_vec();
                    path.extend([key("platforms"), Seg::Index(i)]);
                    self.error(rel, &path, e.to_string(), "platform")
                }
            }
        }
        out
    }

    pub(crate) fn settings(&mut self) -> Settings {
        let rel = "graft.yaml";
        let file = self.root.join(rel);
        let mut settings = Settings {
            file: file.clone(),
            repo: String::new(),
            target: DEFAULT_TARGET.to_string(),
            science_target: DEFAULT_SCIENCE_TARGET.to_string(),
            label_prefix: None,
            platforms: Vec::new(),
            tags: DEFAULT_TAGS.iter().map(|s| s.to_string()).collect(),
            change_ignore: Vec::new(),
            rebuild_all: Vec::new(),
            default_branch: None,
            branches: Vec::new(),
            factory_namespace: None,
            factory_rebuild_delay: None,
            factory_auto_rebuild: None,
        };
        if !file.exists() {
            self.problems.push(Problem::error(
                rel,
                Pos::START,
                "(root)",
                "file is missing; a library needs a graft.yaml with at least `repo:` (the destination, e.g. docker://registry.example.org/images or oci:out/library)",
                "missing-file",
            ));
            return settings;
        }
        let Some(node) = self.read(rel, FileKind::Settings) else {
            return settings;
        };
        if let Some(repo) = text_of(&node, "repo") {
            if let Err(e) = repo.parse::<ImageRef>() {
                self.error(rel, &[key("repo")], e.to_string(), "reference");
            }
            settings.repo = repo;
        }
        if let Some(target) = text_of(&node, "target") {
            settings.target = target;
        }
        match template::check(&settings.target, &TARGET_PLACEHOLDERS) {
            Err(m) => self.error(rel, &[key("target")], m, "template"),
            Ok(()) if !settings.repo.is_empty() => {
                let sample = template::expand_target(&settings.target, &settings.repo, "name");
                if let Err(m) = check_target(&sample) {
                    let path = if node.get("target").is_some() {
                        "target"
                    } else {
                        "repo"
                    };
                    self.error(rel, &[key(path)], m, "reference");
                }
            }
            Ok(()) => {}
        }
        if let Some(t) = text_of(&node, "science_target") {
            match template::check(&t, &TARGET_PLACEHOLDERS) {
                Err(m) => self.error(rel, &[key("science_target")], m, "template"),
                Ok(()) if !settings.repo.is_empty() => {
                    let sample = template::expand_target(&t, &settings.repo, "name");
                    if let Err(m) = check_target(&sample) {
                        self.error(rel, &[key("science_target")], m, "reference");
                    }
                }
                Ok(()) => {}
            }
            settings.science_target = t;
        }
        settings.label_prefix = text_of(&node, "label_prefix");
        settings.platforms = self.platforms(rel, &node, &[]);
        if let Some(tags) = node.get("tags") {
            settings.tags = string_list(Some(tags));
            for (i, t) in settings.tags.clone().iter().enumerate() {
                if let Err(m) = template::check(t, &TAG_PLACEHOLDERS) {
                    self.error(rel, &[key("tags"), Seg::Index(i)], m, "template");
                }
            }
        }
        for field in ["change_ignore", "rebuild_all"] {
            let globs = string_list(node.get(field));
            for (i, g) in globs.iter().enumerate() {
                if let Err(m) = super::changes::check_glob(g) {
                    self.error(rel, &[key(field), Seg::Index(i)], m, "glob");
                }
            }
            match field {
                "change_ignore" => settings.change_ignore = globs,
                _ => settings.rebuild_all = globs,
            }
        }
        settings.default_branch = text_of(&node, "default_branch");
        settings.branches = self.branch_rules(rel, &node);
        if let Some(f) = node.get("factory") {
            settings.factory_namespace = text_of(f, "namespace");
            settings.factory_rebuild_delay = text_of(f, "rebuild_delay");
            settings.factory_auto_rebuild = match f.get("auto_rebuild").and_then(Node::text) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            };
        }
        settings
    }

    /// `branches:` of `graft.yaml`: each pattern and tag template checked, each problem at
    /// its line (an unknown placeholder, a pattern or expansion that is not valid).
    fn branch_rules(&mut self, rel: &str, node: &Node) -> Vec<super::branches::BranchRule> {
        let mut out = Vec::new();
        for (i, item) in node
            .get("branches")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(branch) = text_of(item, "branch") else {
                continue;
            };
            let at = |k: &str| vec![key("branches"), Seg::Index(i), key(k)];
            if let Err(m) = super::changes::check_glob(&branch) {
                self.error(rel, &at("branch"), m, "glob");
            }
            let tags = string_list(item.get("tags"));
            for (j, t) in tags.iter().enumerate() {
                let mut path = at("tags");
                path.push(Seg::Index(j));
                if let Err(m) = template::check(t, &TAG_PLACEHOLDERS) {
                    self.error(rel, &path, m, "template");
                    continue;
                }
                // Expanded with sample values, it must be a valid tag.
                let tag = template::expand_tag(t, "1.0", &BuildInfo::sentinel());
                if let Err(reason) = validate_tag(&tag) {
                    self.error(
                        rel,
                        &path,
                        format!("tag template {t:?} gives {tag:?} for version \"1.0\", which is not a valid tag: {reason}"),
                        "template",
                    );
                }
            }
            out.push(super::branches::BranchRule { branch, tags });
        }
        out
    }

    pub(crate) fn manifest(
        &mut self,
        rel: &str,
        settings: &Settings,
        layers: &BTreeMap<String, Layer>,
    ) -> Option<Manifest> {
        let node = self.read(rel, FileKind::Manifest)?;
        if let Some(compat) = text_of(&node, "compat") {
            self.compat_refs.insert(compat.clone());
            if !layers.contains_key(&compat) {
                let known = known_layers(layers);
                self.error(
                    rel,
                    &[key("compat")],
                    format!("no layer {compat:?} under layers/ ({known})"),
                    "missing-layer",
                );
            }
        }
        let name = text_of(&node, "name")?;
        match (node.key("build"), node.key("science")) {
            (Some(b), Some(s)) => {
                let (first, second) = if b.pos < s.pos { (b, s) } else { (s, b) };
                self.problems.push(Problem::error(
                    rel,
                    second.pos,
                    display_path(&[key(&second.text)]),
                    format!(
                        "the manifest has both build: and science: (line {}): it either builds its science image (build:) or names an existing one (science:)",
                        first.pos.line
                    ),
                    "build-or-science",
                ));
                return None;
            }
            (None, None) => {
                self.problems.push(Problem::error(
                    rel,
                    Pos::START,
                    "(root)",
                    "the manifest has neither science: (an existing image) nor build: (graft builds it from a Dockerfile)",
                    "build-or-science",
                ));
                return None;
            }
            _ => {}
        }
        let built = match node.get("build") {
            Some(b) => Some(self.build(rel, &node, b, settings)?),
            None => None,
        };
        let version = match (text_of(&node, "version"), &built) {
            (Some(v), _) => v,
            (None, Some(b)) => self.version_from_build_tags(rel, &node, b)?,
            (None, None) => String::new(),
        };
        let git = node.get("git").and_then(|g| {
            Some(GitSource {
                repo: text_of(g, "repo")?,
                fetch: text_of(g, "fetch").unwrap_or_else(|| DEFAULT_FETCH.to_string()),
                commit: text_of(g, "commit"),
            })
        });
        if let Some(c) = git.as_ref().and_then(|g| g.commit.as_deref()) {
            if !is_commit(c) {
                self.error(
                    rel,
                    &[key("git"), key("commit")],
                    format!("{c:?} must be a full commit hash (40 or 64 lowercase hex digits)"),
                    "commit",
                );
            }
        }
        let has_compat = node.get("compat").is_some();
        let (image, target, digest) = match &built {
            Some(_) => {
                let image = match built_science(&self.root, settings, &name, &version, has_compat) {
                    Ok(l) => l,
                    // graft.yaml's repo or the version is wrong: reported where they are.
                    Err(_) => return None,
                };
                (image, name.clone(), None)
            }
            None => {
                let (image, target, digest) = self.science(rel, &node)?;
                (image, target, digest)
            }
        };
        let maintainers = node
            .get("maintainers")
            .map(Node::items)
            .unwrap_or_default()
            .iter()
            .map(|m| Maintainer {
                name: text_of(m, "name").unwrap_or_default(),
                email: text_of(m, "email"),
                github: text_of(m, "github"),
            })
            .collect();
        let metadata = node
            .get("metadata")
            .map(|m| Metadata {
                identifier: text_of(m, "identifier"),
                project: text_of(m, "project"),
            })
            .unwrap_or_default();
        let mut platforms = self.platforms(rel, &node, &[]);
        if node.get("platforms").is_none() {
            platforms = match &built {
                Some(b) if !b.platforms.is_empty() => b.platforms.clone(),
                _ => settings.platforms.clone(),
            };
        }
        let tags = match (node.get("tags"), &built) {
            // Without compat the built image is the final image: its tags are build.tags.
            (Some(_), Some(_)) if !has_compat => {
                self.error(
                    rel,
                    &[key("tags")],
                    "with build: and no compat the built image is the final image, tagged with build.tags: move these tags there, or add compat",
                    "tags",
                );
                Vec::new()
            }
            (None, Some(b)) if !has_compat => b.tags.clone(),
            (Some(t), _) => {
                let tags = string_list(Some(t));
                for (i, t) in tags.iter().enumerate() {
                    if let Err(m) = template::check(t, &TAG_PLACEHOLDERS) {
                        self.error(rel, &[key("tags"), Seg::Index(i)], m, "template");
                    }
                }
                tags
            }
            (None, _) => settings.tags.clone(),
        };
        if let (Some(b), true) = (&built, has_compat) {
            // Refresh reads {science_target}:{version}: the build must write that tag.
            let sentinel = BuildInfo::sentinel();
            if !b
                .tags
                .iter()
                .any(|t| template::expand_tag(t, &version, &sentinel) == version)
            {
                self.error(
                    rel,
                    &[key("build"), key("tags")],
                    format!("with compat, the refresh reads the built image as {}:{version}: build.tags must include \"{{version}}\"", image.text.rsplit_once(':').map_or(image.text.as_str(), |(r, _)| r)),
                    "tags",
                );
            }
        }
        // Each tag, expanded for this version with sample build values, must be a valid tag.
        for (i, t) in tags.iter().enumerate() {
            if template::check(t, &TAG_PLACEHOLDERS).is_err() {
                continue;
            }
            let tag = template::expand_tag(t, &version, &BuildInfo::sentinel());
            if let Err(reason) = validate_tag(&tag) {
                let path = match (node.get("tags"), &built) {
                    (Some(_), _) => vec![key("tags"), Seg::Index(i)],
                    (None, Some(_)) if !has_compat => {
                        vec![key("build"), key("tags"), Seg::Index(i)]
                    }
                    (None, _) => vec![key("version")],
                };
                self.error(
                    rel,
                    &path,
                    format!("tag template {t:?} gives {tag:?} for version {version:?}, which is not a valid tag: {reason}"),
                    "template",
                );
            }
        }
        let checks = string_list(node.get("checks"));
        if !checks.is_empty() && built.is_none() {
            self.error(
                rel,
                &[key("checks")],
                "checks run inside an image graft builds: they need build: (for an existing science: image, run them where it is built)",
                "checks",
            );
        }
        Some(Manifest {
            file_digest: self.digests.get(rel).cloned()?,
            file: self.root.join(rel),
            rel: rel.to_string(),
            name,
            version,
            description: text_of(&node, "description"),
            maintainers,
            metadata,
            git,
            science: Science {
                image,
                target,
                digest,
            },
            build: built,
            checks,
            compat: text_of(&node, "compat").unwrap_or_default(),
            platforms,
            tags,
            labels: string_map(node.get("labels")),
            annotations: string_map(node.get("annotations")),
        })
    }

    /// `science:` of a manifest: the image, its breadcrumb name, its pinned digest.
    fn science(&mut self, rel: &str, node: &Node) -> Option<(Located, String, Option<Digest>)> {
        let sci = node.get("science");
        let image_text = sci.and_then(|s| text_of(s, "image"))?;
        let image = match locate(&self.root, &image_text) {
            Ok(l) => l,
            Err(e) => {
                self.error(
                    rel,
                    &[key("science"), key("image")],
                    e.to_string(),
                    "reference",
                );
                return None;
            }
        };
        if !names_version(&image_text) {
            self.error(
                rel,
                &[key("science"), key("image")],
                format!(
                    "{image_text:?} names no tag or digest; say which image, e.g. {image_text}:1.0"
                ),
                "reference",
            );
        }
        let target = match sci.and_then(|s| text_of(s, "target")) {
            Some(t) => t,
            None => {
                let t = default_science_target(&image.image);
                if !is_name(&t) {
                    self.error(
                        rel,
                        &[key("science"), key("image")],
                        format!("the default science.target {t:?} (the last path element) is not a valid name; set science.target"),
                        "reference",
                    );
                }
                t
            }
        };
        let digest = match sci.and_then(|s| text_of(s, "digest")) {
            Some(d) => match d.parse::<Digest>() {
                Ok(d) => Some(d),
                Err(e) => {
                    self.error(
                        rel,
                        &[key("science"), key("digest")],
                        e.to_string(),
                        "reference",
                    );
                    None
                }
            },
            None => None,
        };
        Some((image, target, digest))
    }

    /// `build:` of a manifest, defaults applied; paths must stay inside the source.
    fn build(&mut self, rel: &str, node: &Node, b: &Node, settings: &Settings) -> Option<Build> {
        let at = |k: &str| vec![key("build"), key(k)];
        let mut out = Build {
            path: text_of(b, "path").unwrap_or_else(|| ".".into()),
            dockerfile: text_of(b, "dockerfile").unwrap_or_else(|| "Dockerfile".into()),
            context: text_of(b, "context").unwrap_or_else(|| ".".into()),
            platforms: Vec::new(),
            tags: match b.get("tags") {
                Some(t) => string_list(Some(t)),
                None => DEFAULT_BUILD_TAGS.iter().map(|t| t.to_string()).collect(),
            },
            labels: string_map(b.get("labels")),
            annotations: string_map(b.get("annotations")),
            test: text_of(b, "test"),
            args: string_map(b.get("args")),
            target: text_of(b, "target"),
        };
        for (field, value) in [
            ("path", &out.path),
            ("dockerfile", &out.dockerfile),
            ("context", &out.context),
        ] {
            if let Err(m) = check_source_path(value) {
                self.error(rel, &at(field), m, "path");
            }
        }
        out.platforms = self.platforms(rel, b, &[key("build")]);
        if b.get("platforms").is_none() {
            out.platforms = match node.get("platforms") {
                Some(_) => self.platforms(rel, node, &[]),
                None => settings.platforms.clone(),
            };
        }
        for (i, t) in out.tags.iter().enumerate() {
            let mut path = at("tags");
            path.push(Seg::Index(i));
            if let Err(m) = template::check(t, &TAG_PLACEHOLDERS) {
                self.error(rel, &path, m, "template");
            }
        }
        Some(out)
    }

    /// A `build:` manifest without `version`: the first of `build.tags`, which must then be a
    /// plain tag (it is what `{version}` stands for).
    fn version_from_build_tags(&mut self, rel: &str, node: &Node, b: &Build) -> Option<String> {
        if node.get("build").and_then(|n| n.get("tags")).is_none() {
            self.error(
                rel,
                &[key("version")],
                "required field is missing: with build:, give version or build.tags (whose first entry is the version)",
                "version",
            );
            return None;
        }
        let first = b.tags.first()?;
        if first.contains('{') || validate_tag(first).is_err() {
            self.error(
                rel,
                &[key("build"), key("tags"), Seg::Index(0)],
                format!("{first:?} stands for {{version}} (no version is given), so it must be a plain tag without placeholders; or set version"),
                "template",
            );
            return None;
        }
        Some(first.clone())
    }

    pub(crate) fn layer(&mut self, name: &str) -> Option<Layer> {
        let rel = self.layer_rel(name);
        let dir_rel = self.layer_dir_rel(name);
        let dir = self.root.join(&dir_rel);
        if !is_name(name) {
            self.problems.push(Problem::error(
                &rel,
                Pos::START,
                "(root)",
                format!("layer directory name {name:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"),
                "layer-name",
            ));
        }
        if let Err(m) = self.real(&dir_rel) {
            self.problems
                .push(Problem::error(&rel, Pos::START, "(root)", m, OUTSIDE));
            return None;
        }
        if !dir.join("layer.yaml").exists() {
            self.problems.push(Problem::error(
                &rel,
                Pos::START,
                "(root)",
                format!("file is missing; every directory under layers/ is a layer: add {rel} (it may be empty) or move the directory out of layers/"),
                "missing-file",
            ));
            return None;
        }
        let node = self.read(&rel, FileKind::Layer)?;
        let files = dir.join("files");
        let files = match std::fs::symlink_metadata(&files) {
            Ok(m) if m.is_dir() => Some(files),
            Ok(_) => {
                self.problems.push(Problem::error(
                    &rel,
                    Pos::START,
                    "(root)",
                    format!("{dir_rel}/files is not a directory; it holds the tree placed at /"),
                    "files",
                ));
                None
            }
            Err(_) => None,
        };
        let mut config = ImageConfig::default();
        if let Some(c) = node.get("config") {
            config.env = c
                .get("env")
                .map(|e| {
                    e.entries()
                        .map(|(k, v)| (k.text.clone(), v.text().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            config.entrypoint = c.get("entrypoint").map(|n| string_list(Some(n)));
            config.cmd = c.get("cmd").map(|n| string_list(Some(n)));
            config.user = text_of(c, "user");
            config.workdir = text_of(c, "workdir");
            config.labels = string_map(c.get("labels"));
            config.exposed_ports = string_list(c.get("exposed_ports"))
                .iter()
                .map(|p| normalize_port(p))
                .collect();
        }
        let remove = string_list(node.get("remove"));
        for (i, r) in remove.iter().enumerate() {
            if let Err(m) = check_image_path(r) {
                self.error(&rel, &[key("remove"), Seg::Index(i)], m, "path");
            }
        }
        let owner = match text_of(&node, "owner") {
            Some(o) => match parse_owner(&o) {
                Some(v) => Some(v),
                None => {
                    // The schema already names a malformed owner; only numbers too big remain.
                    if o.split(':')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
                    {
                        self.error(
                            &rel,
                            &[key("owner")],
                            format!("{o:?} is out of range: ids go up to {}", u32::MAX),
                            "owner",
                        );
                    }
                    None
                }
            },
            None => None,
        };
        let mut modes = BTreeMap::new();
        if let Some(m) = node.get("modes") {
            for (k, v) in m.entries() {
                if let Err(msg) = check_image_path(&k.text) {
                    let pos = k.pos;
                    self.problems.push(Problem::error(
                        &rel,
                        pos,
                        display_path(&[key("modes"), key(&k.text)]),
                        msg,
                        "path",
                    ));
                    continue;
                }
                let Some(t) = v.text() else { continue };
                match parse_mode(t) {
                    Some(mode) => {
                        modes.insert(k.text.trim_end_matches('/').to_string(), mode);
                    }
                    None => self.error(
                        &rel,
                        &[key("modes"), key(&k.text)],
                        format!("{t:?} is not an octal mode like 0755 or 0644"),
                        "mode",
                    ),
                }
            }
        }
        Some(Layer {
            name: name.to_string(),
            dir,
            file: self.root.join(&rel),
            rel,
            description: text_of(&node, "description"),
            includes: string_list(node.get("includes")),
            config,
            remove: remove
                .iter()
                .map(|r| r.trim_end_matches('/').to_string())
                .collect(),
            owner,
            modes,
            files,
        })
    }

    /// Checks across files: compat layers and includes exist, include cycles, modes name
    /// files that exist, final references are unique, every layer is used.
    pub(crate) fn cross_checks(&mut self, lib: &Library) {
        self.layer_checks(lib);
        self.duplicates(lib);
        self.unused(lib);
        self.order_checks(lib);
    }

    /// The text of the library file `rel` (inside the library, size-limited), or why not.
    pub(crate) fn read_library_file(&self, rel: &str) -> Result<String, String> {
        self.read_text(rel).map_err(|(m, _)| m)
    }

    /// The builds' Dockerfiles exist and parse, `build.target` names a stage, no FROM cycle.
    fn order_checks(&mut self, lib: &Library) {
        if lib.manifests.iter().all(|m| m.build.is_none()) {
            return;
        }
        let order = super::order::build_order(lib, |rel| self.read_library_file(rel));
        for issue in order.issues {
            match issue.at {
                super::order::Location::Field { manifest, path } => {
                    self.error(&manifest, &path, issue.message, issue.code)
                }
                super::order::Location::Line { file, line } => self.problems.push(Problem::error(
                    &file,
                    Pos { line, column: 1 },
                    "(root)",
                    issue.message,
                    issue.code,
                )),
            }
        }
    }

    /// Checks among layers: includes exist, no cycles, modes name files that exist.
    pub(crate) fn layer_checks(&mut self, lib: &Library) {
        let known = known_layers(&lib.layers);
        for layer in lib.layers.values() {
            for (i, inc) in layer.includes.iter().enumerate() {
                if !lib.layers.contains_key(inc) {
                    self.error(
                        &layer.rel,
                        &[key("includes"), Seg::Index(i)],
                        format!("no layer {inc:?} under layers/ ({known})"),
                        "missing-layer",
                    );
                }
            }
        }
        self.cycles(lib);
        self.mode_paths(lib);
    }

    fn cycles(&mut self, lib: &Library) {
        // Depth-first search; each cycle is reported once, at the include that leaves the
        // cycle's alphabetically first layer.
        let mut reported: BTreeSet<Vec<String>> = BTreeSet::new();
        for start in lib.layers.keys() {
            let mut stack = vec![start.clone()];
            self.walk(lib, &mut stack, &mut reported);
        }
    }

    fn walk(
        &mut self,
        lib: &Library,
        stack: &mut Vec<String>,
        reported: &mut BTreeSet<Vec<String>>,
    ) {
        let Some(layer) = lib.layers.get(stack.last().expect("non-empty")) else {
            return;
        };
        for inc in &layer.includes {
            if let Some(at) = stack.iter().position(|s| s == inc) {
                let mut cycle: Vec<String> = stack[at..].to_vec();
                let min = cycle
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, n)| n.as_str())
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                cycle.rotate_left(min);
                if reported.insert(cycle.clone()) {
                    let first = &lib.layers[&cycle[0]];
                    let next = cycle.get(1).unwrap_or(&cycle[0]);
                    let idx = first.includes.iter().position(|i| i == next).unwrap_or(0);
                    let mut shown = cycle.clone();
                    shown.push(cycle[0].clone());
                    self.error(
                        &first.rel.clone(),
                        &[key("includes"), Seg::Index(idx)],
                        format!("include cycle: {}", shown.join(" -> ")),
                        "include-cycle",
                    );
                }
                continue;
            }
            if stack.len() > lib.layers.len() {
                continue;
            }
            stack.push(inc.clone());
            self.walk(lib, stack, reported);
            stack.pop();
        }
    }

    fn mode_paths(&mut self, lib: &Library) {
        for layer in lib.layers.values() {
            if layer.modes.is_empty() {
                continue;
            }
            let chain = lib.chain(&layer.name);
            let trees: Vec<PathBuf> = chain
                .iter()
                .filter_map(|n| lib.layers.get(n).and_then(|l| l.files.clone()))
                .collect();
            for path in layer.modes.keys() {
                let rel = path.trim_start_matches('/');
                let exists = trees.iter().any(|t| in_tree(t, rel));
                if !exists {
                    let where_ = if chain.len() > 1 {
                        format!("the files/ of layer {:?} or its includes", layer.name)
                    } else {
                        format!("{}/files/", self.layer_dir_rel(&layer.name))
                    };
                    self.error(
                        &layer.rel.clone(),
                        &[key("modes"), key(path)],
                        format!("{path} is not in {where_}"),
                        "mode-path",
                    );
                }
            }
        }
    }

    fn duplicates(&mut self, lib: &Library) {
        let sentinel = BuildInfo::sentinel();
        let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
        for m in &lib.manifests {
            let has_tags = self
                .nodes
                .get(&m.rel)
                .is_some_and(|n| n.get("tags").is_some());
            for (i, t) in m.tags.iter().enumerate() {
                let reference =
                    lib.reference_text(m, &template::expand_tag(t, &m.version, &sentinel));
                let path = if has_tags {
                    vec![key("tags"), Seg::Index(i)]
                } else {
                    vec![key("name")]
                };
                let pos = self
                    .nodes
                    .get(&m.rel)
                    .map_or(Pos::START, |n| n.locate(&path));
                let where_ = format!("{}:{pos} (tag template {t:?})", m.rel);
                match seen.get(&reference) {
                    Some((first, template_)) => {
                        let what = if first.starts_with(&format!("{}:", m.rel)) {
                            format!(
                                "is produced twice by this manifest (tags {template_:?} and {t:?})"
                            )
                        } else {
                            format!("is also produced by {first}")
                        };
                        self.error(
                            &m.rel,
                            &path,
                            format!(
                                "final reference {} {what}",
                                reference_for_message(&reference, t, &m.version)
                            ),
                            "duplicate-reference",
                        );
                    }
                    None => {
                        seen.insert(reference, (where_, t.clone()));
                    }
                }
            }
        }
    }

    fn unused(&mut self, lib: &Library) {
        // A manifest with errors may not have said which compat layer it uses.
        if self
            .problems
            .iter()
            .any(|p| p.is_error() && p.file.starts_with("manifests/"))
        {
            return;
        }
        let used: BTreeSet<String> = self
            .compat_refs
            .iter()
            .filter(|c| lib.layers.contains_key(*c))
            .flat_map(|c| lib.chain(c))
            .collect();
        for layer in lib.layers.values() {
            if !used.contains(&layer.name) {
                self.problems.push(Problem::warning(
                    &layer.rel,
                    Pos::START,
                    "(root)",
                    format!(
                        "layer {:?} is not used: no manifest's compat is it or includes it",
                        layer.name
                    ),
                    "unused-layer",
                ));
            }
        }
    }
}

/// Whether `rel` is in the tree `root` as the layer builder sees it: every directory on the
/// way a real directory (the builder never follows a symlink, and neither does this look).
fn in_tree(root: &Path, rel: &str) -> bool {
    let mut path = root.to_path_buf();
    let mut comps = rel.split('/').filter(|c| !c.is_empty()).peekable();
    while let Some(c) = comps.next() {
        path.push(c);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if comps.peek().is_none() || m.is_dir() => {}
            _ => return false,
        }
    }
    true
}

fn known_layers(layers: &BTreeMap<String, Layer>) -> String {
    if layers.is_empty() {
        "there are no layers".to_string()
    } else {
        let names: Vec<&str> = layers.keys().map(String::as_str).collect();
        format!("layers: {}", names.join(", "))
    }
}

/// The reference of a duplicate, shown with its template placeholders rather than the
/// sample values it was compared with.
fn reference_for_message(reference: &str, template_: &str, version: &str) -> String {
    let tag = template::expand_tag(template_, version, &BuildInfo::default());
    match reference.rsplit_once(':') {
        Some((repo, _)) => format!("{repo}:{tag}"),
        None => reference.to_string(),
    }
}

/// Check an expanded target (a repository without tag).
fn check_target(target: &str) -> Result<(), String> {
    let parsed = format!("{target}:tag")
        .parse::<ImageRef>()
        .map_err(|e| e.to_string())?;
    let ok = match &parsed {
        ImageRef::Docker(d) => d.tag.as_deref() == Some("tag") && d.digest.is_none(),
        ImageRef::Layout(l) | ImageRef::Archive(l) => l.tag.as_deref() == Some("tag"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "target {target:?} must name a repository without tag or digest: graft adds the tags"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "jupyter-compat", "a.b", "a__b", "a--b", "x1"] {
            assert!(is_name(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a..b", "a___b", "a/b", "a_.b"] {
            assert!(!is_name(bad), "{bad}");
        }
    }

    #[test]
    fn image_paths() {
        assert!(check_image_path("/opt/x").is_ok());
        assert_eq!(
            check_image_path("opt/x").unwrap_err(),
            "\"opt/x\" is not an absolute path; write it as it is in the image, e.g. /opt/x"
        );
        assert!(check_image_path("/").is_err());
        assert!(check_image_path("/a/../b").is_err());
        let e = check_image_path("/.wh..opq").unwrap_err();
        assert!(e.contains("reserved for whiteouts"), "{e}");
        assert!(check_image_path("/opt/.wh.x/y").is_err());
        assert!(check_image_path("/opt/a.wh.x").is_ok());
    }

    #[test]
    fn versions_named() {
        assert!(names_version("docker://localhost:5000/a/b:1"));
        assert!(!names_version("docker://localhost:5000/a/b"));
        assert!(names_version("docker://r/a@sha256:00"));
        assert!(names_version("oci:x/y:1.0"));
        assert!(!names_version("oci:x/y"));
    }
}
