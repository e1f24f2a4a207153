//! From a [`LayerSpec`] to the sorted list of archive entries: the trees are walked (never
//! following symlinks), overlaid, whiteouts added for `remove`, modes normalised or taken from
//! `modes`, and hard links found. Everything that makes a tree unusable is reported here,
//! before a byte of the layer is written.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil::{open_regular_nofollow, OpenRefused};

use super::LayerSpec;

/// Prefix of whiteout file names.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// One entry of the archive, in archive order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedEntry {
    /// The name in the archive: `usr/bin/`, `etc/hosts`, `opt/.wh.cache`.
    pub name: String,
    /// What it is.
    pub kind: PlannedKind,
    /// Permission bits written into the header.
    pub mode: u32,
}

/// What an archive entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedKind {
    /// A directory.
    Dir,
    /// A regular file whose bytes are read from `source` when the layer is written.
    File {
        /// Where the bytes are.
        source: PathBuf,
        /// How many bytes (checked again while reading).
        size: u64,
    },
    /// A symbolic link, kept as a link.
    Symlink {
        /// The link's target, as stored.
        target: String,
    },
    /// A second or later path of a file with several hard links.
    HardLink {
        /// The archive name of the first path.
        target: String,
    },
    /// An empty `.wh.<name>` file deleting `<name>` from lower layers.
    Whiteout,
}

/// A path inside the layer as one string whose bytewise order is the archive order:
/// components joined by NUL (which no name contains, and which sorts before every other
/// byte, so a directory's children come right after it, before its next sibling). A whiteout
/// component is written with an extra NUL in front (`a\0b\0\0c` for `a/b/.wh.c`), so it sorts
/// before every real name of its directory: an extractor then deletes the lower file before
/// it writes a new one of that name. One string per entry keeps memory small.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
struct Key(String);

const SEP: char = '\0';

impl Key {
    fn from_comps(comps: &[String]) -> Key {
        Key(comps.join("\0"))
    }

    fn push(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push(SEP);
        }
        self.0.push_str(name);
    }

    fn push_whiteout(&mut self, name: &str) {
        if !self.0.is_empty() {
            self.0.push(SEP);
        }
        self.0.push(SEP);
        self.0.push_str(name);
    }

    /// Remove the last component pushed.
    fn pop(&mut self) {
        match self.0.rfind(SEP) {
            // A whiteout's own marker NUL goes with it.
            Some(i) => self.0.truncate(if i > 0 && self.0.as_bytes()[i - 1] == 0 {
                i - 1
            } else {
                i
            }),
            None => self.0.clear(),
        }
    }

    fn depth(&self) -> usize {
        self.0.split(SEP).filter(|c| !c.is_empty()).count()
    }

    /// The name in the archive: `a/b/.wh.c`.
    fn archive_name(&self) -> String {
        let mut name = String::with_capacity(self.0.len() + 4);
        let mut whiteout = false;
        let mut first = true;
        for c in self.0.split(SEP) {
            if c.is_empty() {
                whiteout = true;
                continue;
            }
            if !first {
                name.push('/');
            }
            first = false;
            if whiteout {
                name.push_str(WHITEOUT_PREFIX);
                whiteout = false;
            }
            name.push_str(c);
        }
        name
    }

    /// The range of keys strictly below this one (its descendants).
    fn below(&self) -> std::ops::Range<Key> {
        Key(format!("{}\0", self.0))..Key(format!("{}\u{1}", self.0))
    }
}

#[derive(Debug)]
enum Node {
    Dir,
    File {
        source: PathBuf,
        size: u64,
        executable: bool,
        /// (device, inode) when the file has more than one link.
        shared: Option<(u64, u64)>,
    },
    Symlink {
        target: String,
        /// The link in the source tree, for errors.
        source: PathBuf,
    },
    Whiteout,
}

/// Parse an absolute image path (`/etc/motd`) as written in `remove` or `modes` into its
/// components. `field` names the list it came from, for the error.
pub fn image_path(field: &str, entry: &str) -> Result<Vec<String>> {
    let bad = |reason: &str| Error::LayerSpec {
        field: field.to_string(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    if !entry.starts_with('/') {
        return Err(bad(&format!(
            "not an absolute path (write \"/{}\")",
            entry.trim_start_matches("./")
        )));
    }
    let comps: Vec<String> = entry
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if comps.iter().any(|c| c == "." || c == "..") {
        return Err(bad("contains a \".\" or \"..\" component"));
    }
    if entry.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if comps.is_empty() {
        return Err(bad("names the root directory"));
    }
    // Such a name in a layer is a whiteout itself: `/.wh..opq` would hide the whole base.
    if comps.iter().any(|c| c.starts_with(WHITEOUT_PREFIX)) {
        return Err(bad(
            "names starting with \".wh.\" are reserved for whiteouts; name the path to remove itself",
        ));
    }
    Ok(comps)
}

/// Walk, overlay and check everything in `spec`; the entries in archive order.
pub fn plan(spec: &LayerSpec) -> Result<Vec<PlannedEntry>> {
    let mut nodes: BTreeMap<Key, Node> = BTreeMap::new();
    for root in &spec.trees {
        add_tree(root, &mut nodes)?;
    }
    check_links(&nodes)?;
    let mut removed = std::collections::BTreeSet::new();
    for entry in &spec.remove {
        let comps = image_path("remove", entry)?;
        if !removed.insert(comps.clone()) {
            continue;
        }
        add_whiteout(entry, &comps, &mut nodes)?;
    }
    let mut modes: HashMap<Key, u32> = HashMap::new();
    for (path, &mode) in &spec.modes {
        let comps = image_path("modes", path)?;
        if mode > 0o7777 {
            return Err(Error::LayerSpec {
                field: "modes".into(),
                entry: path.clone(),
                reason: format!("mode {mode:o} is not between 0 and 7777 (octal)"),
            });
        }
        let key = Key::from_comps(&comps);
        if !nodes.contains_key(&key) {
            return Err(Error::LayerSpec {
                field: "modes".into(),
                entry: path.clone(),
                reason: "names no file or directory in the layer".into(),
            });
        }
        modes.insert(key, mode);
    }

    let mut first_path: HashMap<(u64, u64), String> = HashMap::new();
    let mut entries = Vec::with_capacity(nodes.len());
    for (key, node) in nodes {
        let mut name = key.archive_name();
        let (kind, default_mode) = match node {
            Node::Dir => {
                name.push('/');
                (PlannedKind::Dir, 0o755)
            }
            Node::File {
                source,
                size,
                executable,
                shared,
            } => {
                let mode = if executable { 0o755 } else { 0o644 };
                match shared.map(|id| first_path.get(&id).cloned().ok_or(id)) {
                    Some(Ok(target)) => (PlannedKind::HardLink { target }, mode),
                    Some(Err(id)) => {
                        first_path.insert(id, name.clone());
                        (PlannedKind::File { source, size }, mode)
                    }
                    None => (PlannedKind::File { source, size }, mode),
                }
            }
            Node::Symlink { target, .. } => (PlannedKind::Symlink { target }, 0o777),
            Node::Whiteout => (PlannedKind::Whiteout, 0o644),
        };
        let mode = modes.get(&key).copied().unwrap_or(default_mode);
        entries.push(PlannedEntry { name, kind, mode });
    }
    Ok(entries)
}

/// Open the file `path` that the walk of a layer tree found (and `lstat`ed) as a regular file,
/// to copy its bytes into the layer: without following a symlink or blocking on a FIFO swapped
/// in since, and only if the opened handle is a regular file. Whatever replaced it is refused
/// (naming the file), never read: a link to a file outside the tree does not put that file's
/// bytes into the layer.
pub(crate) fn open_source_file(path: &Path) -> Result<fs::File> {
    open_regular_nofollow(path).map_err(|e| match e {
        OpenRefused::Io(err) => Error::io("reading layer file", path, err),
        OpenRefused::Refused(reason) => layer_error(
            path,
            format!("{reason} (it was a regular file when the layer tree was read)"),
        ),
    })
}

fn layer_error(path: &Path, reason: impl Into<String>) -> Error {
    Error::Layer {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn add_tree(root: &Path, nodes: &mut BTreeMap<Key, Node>) -> Result<()> {
    let meta = fs::metadata(root).map_err(|e| Error::io("reading layer tree", root, e))?;
    if !meta.is_dir() {
        return Err(layer_error(root, "a layer tree must be a directory"));
    }
    let mut key = Key::default();
    add_dir(root, &mut key, nodes)
}

fn add_dir(dir: &Path, key: &mut Key, nodes: &mut BTreeMap<Key, Node>) -> Result<()> {
    let reader = fs::read_dir(dir).map_err(|e| Error::io("reading directory", dir, e))?;
    // The order of read_dir does not matter: nodes land in a sorted map, and within one tree
    // every path is seen once.
    for item in reader {
        let item = item.map_err(|e| Error::io("reading directory", dir, e))?;
        let path = item.path();
        let name = item
            .file_name()
            .into_string()
            .map_err(|_| layer_error(&path, "the name is not valid UTF-8"))?;
        if name.starts_with(WHITEOUT_PREFIX) {
            return Err(layer_error(
                &path,
                "names starting with \".wh.\" are reserved for whiteouts; list the path under `remove` instead",
            ));
        }
        let meta = fs::symlink_metadata(&path).map_err(|e| Error::io("reading", &path, e))?;
        let ft = meta.file_type();
        key.push(&name);
        let node = if ft.is_dir() {
            Node::Dir
        } else if ft.is_file() {
            Node::File {
                source: path.clone(),
                size: meta.len(),
                executable: meta.mode() & 0o111 != 0,
                shared: (meta.nlink() > 1).then(|| (meta.dev(), meta.ino())),
            }
        } else if ft.is_symlink() {
            let target =
                fs::read_link(&path).map_err(|e| Error::io("reading symlink", &path, e))?;
            let target = target
                .into_os_string()
                .into_string()
                .map_err(|_| layer_error(&path, "the symlink target is not valid UTF-8"))?;
            check_link_target(&path, key.depth() - 1, &target)?;
            Node::Symlink {
                target,
                source: path.clone(),
            }
        } else {
            let what = if ft.is_block_device() {
                "a block device"
            } else if ft.is_char_device() {
                "a character device"
            } else if ft.is_fifo() {
                "a fifo"
            } else if ft.is_socket() {
                "a socket"
            } else {
                "of an unknown file type"
            };
            return Err(layer_error(
                &path,
                format!("is {what}; a layer tree may hold only files, directories and symlinks"),
            ));
        };
        let is_dir = matches!(node, Node::Dir);
        insert(nodes, key.clone(), node);
        if is_dir {
            add_dir(&path, key, nodes)?;
        }
        key.pop();
    }
    Ok(())
}

/// Overlay one node: a directory merges into a directory; anything else replaces what was
/// there, including a whole directory subtree of an earlier tree.
fn insert(nodes: &mut BTreeMap<Key, Node>, key: Key, node: Node) {
    if matches!(node, Node::Dir) && matches!(nodes.get(&key), Some(Node::Dir)) {
        return;
    }
    if matches!(nodes.get(&key), Some(Node::Dir)) {
        let below: Vec<Key> = nodes.range(key.below()).map(|(k, _)| k.clone()).collect();
        for k in below {
            nodes.remove(&k);
        }
    }
    nodes.insert(key, node);
}

/// A relative symlink target must stay inside the tree (`depth` is the number of directories
/// between the tree root and the link). Absolute targets are paths in the image, resolved
/// against the container's root, and are kept as they are.
fn check_link_target(path: &Path, depth: usize, target: &str) -> Result<()> {
    if target.starts_with('/') {
        return Ok(());
    }
    let mut depth = depth;
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if depth == 0 {
                    return Err(layer_error(
                        path,
                        format!("the symlink target {target:?} points outside the tree"),
                    ));
                }
                depth -= 1;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// Most symlinks followed while resolving one link's target (as Linux's 40).
const MAX_LINK_HOPS: usize = 40;
/// Most path components looked at while resolving one link's target.
const MAX_LINK_STEPS: usize = 16_384;

/// Every relative symlink of the overlaid trees, resolved through the trees' own symlinks
/// (`d/up -> ..` makes `d/up/d/up/../..` two levels above the root, which the lexical check
/// of [`check_link_target`] cannot see), must stay inside the layer: extracted by a tool that
/// follows links, it must not name a file outside the directory it is extracted into.
fn check_links(nodes: &BTreeMap<Key, Node>) -> Result<()> {
    for (key, node) in nodes {
        let Node::Symlink { target, source } = node else {
            continue;
        };
        if target.starts_with('/') {
            continue;
        }
        let mut dir: Vec<String> = key.0.split(SEP).map(str::to_string).collect();
        dir.pop();
        resolve_link(nodes, dir, target).map_err(|reason| {
            layer_error(source, format!("the symlink target {target:?} {reason}"))
        })?;
    }
    Ok(())
}

/// Follow `target` from the directory `dir` through the symlinks in `nodes`; why it fails.
/// A path the trees do not have is taken as a directory of the image below.
fn resolve_link(
    nodes: &BTreeMap<Key, Node>,
    mut dir: Vec<String>,
    target: &str,
) -> std::result::Result<(), String> {
    // Components still to walk, the next one last.
    let mut pending: Vec<String> = target.split('/').rev().map(str::to_string).collect();
    let mut hops = 0;
    let mut steps = 0;
    let mut via: Option<String> = None;
    while let Some(c) = pending.pop() {
        steps += 1;
        if steps > MAX_LINK_STEPS {
            return Err(format!(
                "takes more than {MAX_LINK_STEPS} steps to resolve through the tree's symlinks"
            ));
        }
        match c.as_str() {
            "" | "." => {}
            ".." => {
                if dir.pop().is_none() {
                    return Err(match &via {
                        Some(v) => format!(
                            "points outside the tree (through the symlink /{v} in the tree)"
                        ),
                        None => "points outside the tree".to_string(),
                    });
                }
            }
            name => {
                dir.push(name.to_string());
                let key = Key::from_comps(&dir);
                if let Some(Node::Symlink { target: next, .. }) = nodes.get(&key) {
                    hops += 1;
                    if hops > MAX_LINK_HOPS {
                        return Err(format!(
                            "does not resolve: more than {MAX_LINK_HOPS} symlinks in a row (a loop?)"
                        ));
                    }
                    via = Some(key.archive_name());
                    dir.pop();
                    if next.starts_with('/') {
                        dir.clear();
                    }
                    pending.extend(next.split('/').rev().map(str::to_string));
                }
            }
        }
    }
    Ok(())
}

fn add_whiteout(entry: &str, comps: &[String], nodes: &mut BTreeMap<Key, Node>) -> Result<()> {
    let mut key = Key::default();
    for parent in &comps[..comps.len() - 1] {
        key.push(parent);
        match nodes.get(&key) {
            None => {
                nodes.insert(key.clone(), Node::Dir);
            }
            Some(Node::Dir) => {}
            Some(_) => {
                return Err(Error::LayerSpec {
                    field: "remove".into(),
                    entry: entry.to_string(),
                    reason: format!("/{} is not a directory in the layer", key.archive_name()),
                })
            }
        }
    }
    key.push_whiteout(&comps[comps.len() - 1]);
    nodes.insert(key, Node::Whiteout);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_in_archive_order_and_name_whiteouts() {
        let key = |comps: &[&str], whiteout: Option<&str>| {
            let mut k = Key::default();
            for c in comps {
                k.push(c);
            }
            if let Some(w) = whiteout {
                k.push_whiteout(w);
            }
            k
        };
        let mut keys = [
            key(&["a.txt"], None),
            key(&["a", "z"], None),
            key(&["a"], None),
            key(&["a"], Some("-x")),
            key(&[], Some("top")),
            key(&["a", "-x"], None),
            key(&["A"], None),
        ];
        keys.sort();
        let names: Vec<String> = keys.iter().map(Key::archive_name).collect();
        assert_eq!(
            names,
            [".wh.top", "A", "a", "a/.wh.-x", "a/-x", "a/z", "a.txt"]
        );
        let mut k = key(&["a", "b"], Some("c"));
        assert_eq!(k.depth(), 3);
        k.pop();
        assert_eq!(k, key(&["a", "b"], None));
        k.pop();
        k.pop();
        assert_eq!(k, Key::default());
        let below = key(&["a"], None).below();
        assert!(below.contains(&key(&["a", "-x"], None)));
        assert!(below.contains(&key(&["a"], Some("w"))));
        assert!(!below.contains(&key(&["a.txt"], None)));
        assert!(!below.contains(&key(&["a"], None)));
    }

    fn link(target: &str) -> Node {
        Node::Symlink {
            target: target.to_string(),
            source: PathBuf::from("src"),
        }
    }

    fn tree(entries: &[(&[&str], Node)]) -> BTreeMap<Key, Node> {
        entries
            .iter()
            .map(|(comps, node)| {
                let comps: Vec<String> = comps.iter().map(|c| c.to_string()).collect();
                let node = match node {
                    Node::Dir => Node::Dir,
                    Node::Symlink { target, source } => Node::Symlink {
                        target: target.clone(),
                        source: source.clone(),
                    },
                    _ => Node::Whiteout,
                };
                (Key::from_comps(&comps), node)
            })
            .collect()
    }

    #[test]
    fn link_targets_resolve_through_the_trees_links() {
        let nodes = tree(&[
            (&["d"], Node::Dir),
            (&["d", "up"], link("..")),
            (&["abs"], link("/")),
            (&["loop"], link("loop/x")),
            (&["a"], link("b")),
            (&["b"], link("a")),
        ]);
        let dir = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let resolve = |d: &[&str], t: &str| resolve_link(&nodes, dir(d), t);
        assert_eq!(resolve(&[], "d/up/d/up/d"), Ok(()));
        assert_eq!(resolve(&[], "d/up/etc/passwd"), Ok(()));
        assert_eq!(resolve(&["usr", "lib"], "../../bin/sh"), Ok(()));
        assert_eq!(
            resolve(&[], "d/up/d/up/../../etc/passwd"),
            Err("points outside the tree (through the symlink /d/up in the tree)".into())
        );
        assert_eq!(
            resolve(&["d"], "up/.."),
            Err("points outside the tree (through the symlink /d/up in the tree)".into())
        );
        // An absolute link is the image's root: nothing above it either.
        assert!(resolve(&[], "abs/..").is_err());
        assert!(resolve(&[], "loop")
            .unwrap_err()
            .contains("more than 40 symlinks"));
        assert!(resolve(&[], "a")
            .unwrap_err()
            .contains("more than 40 symlinks"));
        let long = "./".repeat(MAX_LINK_STEPS);
        assert!(resolve(&[], &long).unwrap_err().contains("steps"));
    }

    #[test]
    fn a_layer_file_swapped_for_a_link_after_the_walk_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        let file = tree.join("key");
        fs::write(&file, b"public").unwrap();
        let outside = dir.path().join("secret");
        fs::write(&outside, b"PRIVATE").unwrap();
        let mut nodes = BTreeMap::new();
        add_tree(&tree, &mut nodes).unwrap();
        assert!(matches!(
            nodes.values().next(),
            Some(Node::File { size: 6, .. })
        ));
        // The walk saw a regular file; by the time it is opened it is a link out of the tree.
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(&outside, &file).unwrap();
        let err = open_source_file(&file).unwrap_err();
        assert!(err.is_usage());
        assert_eq!(
            err.to_string(),
            format!(
                "{}: a symlink, not a regular file: graft does not follow it here (it was a \
                 regular file when the layer tree was read)",
                file.display()
            )
        );
        fs::remove_file(&file).unwrap();
        fs::write(&file, b"public").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut open_source_file(&file).unwrap(), &mut text).unwrap();
        assert_eq!(text, "public");
    }
}
