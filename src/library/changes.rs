//! Change detection: which final images a set of changed files affects, and why. Pure: the
//! changed paths (relative to the library root) and the old manifests come from the caller
//! (`git diff REV..HEAD` through [`super::git`]).
//!
//! Rules, in order, for each changed file:
//! 1. a file matching a `change_ignore` glob of `graft.yaml` never triggers anything;
//! 2. `graft.yaml` itself, or a file matching a `rebuild_all` glob, triggers every image;
//! 3. `manifests/X.yaml` triggers its image: "manifest added", "science reference changed"
//!    (the `science` block differs from the old one), else "manifest changed";
//! 4. `layers/L/layer.yaml` or a file under `layers/L/files/` (what the layer is made of,
//!    [`layer_inputs`]) triggers every image whose compat chain holds `L`;
//! 5. a file inside a science layout the library holds (`oci:testdata/…`) triggers the images
//!    built on it.
//!
//! Anything else (docs, CI files, scripts nobody listed) triggers nothing.

use serde::Serialize;

use super::{Library, Manifest};
use crate::reference::ImageRef;

/// Why an image is affected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// `rebuild-all`, `manifest-added`, `manifest-changed`, `science-changed`, `layer-changed`,
    /// `build-changed` (a `build:` manifest's Dockerfile or context) or `science-layout-changed`.
    pub kind: &'static str,
    /// For `layer-changed`: the layer of the chain that changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// The changed files that gave this reason.
    pub files: Vec<String>,
    /// The reason in words.
    pub message: String,
}

/// One affected image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Affected {
    /// The manifest file (`manifests/astro.yaml`).
    pub manifest: String,
    /// Its image name.
    pub name: String,
    /// Every reason, in the order of the rules above.
    pub reasons: Vec<Reason>,
}

/// The images a diff affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeSet {
    /// The revision as given (`HEAD~1`, `main`).
    pub since: String,
    /// It, resolved to a commit.
    pub commit: String,
    /// Changed files that count (after `change_ignore`).
    pub files: Vec<String>,
    /// Changed files that `change_ignore` left out.
    pub ignored: Vec<String>,
    /// The affected images, in the library's order.
    pub images: Vec<Affected>,
}

impl ChangeSet {
    /// The reasons for manifest `rel`, if it is affected.
    pub fn reasons(&self, rel: &str) -> Option<&[Reason]> {
        self.images
            .iter()
            .find(|a| a.manifest == rel)
            .map(|a| &a.reasons[..])
    }
}

/// The images of `lib` that `changed` (paths relative to the library root) affects.
/// `old_manifest(rel)` gives a manifest file as it was at `commit` (`None`: it did not exist).
pub fn affected(
    lib: &Library,
    since: &str,
    commit: &str,
    changed: &[String],
    old_manifest: impl Fn(&str) -> Option<Vec<u8>>,
) -> ChangeSet {
    let settings = lib.settings();
    let (ignored, files): (Vec<String>, Vec<String>) = changed
        .iter()
        .cloned()
        .partition(|f| settings.change_ignore.iter().any(|g| glob_match(g, f)));
    let everything: Vec<String> = files
        .iter()
        .filter(|f| *f == "graft.yaml" || settings.rebuild_all.iter().any(|g| glob_match(g, f)))
        .cloned()
        .collect();
    let mut images = Vec::new();
    for m in lib.manifests() {
        let mut reasons = Vec::new();
        if !everything.is_empty() {
            reasons.push(Reason {
                kind: "rebuild-all",
                layer: None,
                message: format!(
                    "{} changed (graft.yaml and rebuild_all rebuild every image)",
                    everything.join(", ")
                ),
                files: everything.clone(),
            });
        }
        if files.contains(&m.rel) {
            reasons.push(manifest_reason(m, old_manifest(&m.rel)));
        }
        for layer in lib.chain(&m.compat) {
            let inputs = layer_inputs(lib, &layer);
            let hits: Vec<String> = files
                .iter()
                .filter(|f| {
                    inputs
                        .iter()
                        .any(|i| *f == i || f.starts_with(&format!("{i}/")))
                })
                .cloned()
                .collect();
            if !hits.is_empty() {
                reasons.push(Reason {
                    kind: "layer-changed",
                    message: match layer == m.compat {
                        true => format!("its compat layer {layer} changed"),
                        false => format!("layer {layer} in its chain ({}) changed", m.compat),
                    },
                    layer: Some(layer),
                    files: hits,
                });
            }
        }
        if let Some(r) = build_reason(lib, m, &files) {
            reasons.push(r);
        }
        if let Some(dir) = science_layout(lib, m) {
            let prefix = format!("{dir}/");
            let hits: Vec<String> = files
                .iter()
                .filter(|f| f.starts_with(&prefix))
                .cloned()
                .collect();
            if !hits.is_empty() {
                reasons.push(Reason {
                    kind: "science-layout-changed",
                    layer: None,
                    message: format!("its science layout {dir} changed"),
                    files: hits,
                });
            }
        }
        if !reasons.is_empty() {
            images.push(Affected {
                manifest: m.rel.clone(),
                name: m.name.clone(),
                reasons,
            });
        }
    }
    ChangeSet {
        since: since.to_string(),
        commit: commit.to_string(),
        files,
        ignored,
        images,
    }
}

/// What layer `name`'s bytes are made of, relative to the library root: its `layer.yaml` and
/// its `files/` directory. A README beside them changes neither the layer nor its time.
pub fn layer_inputs(lib: &Library, name: &str) -> Vec<String> {
    let yaml = lib
        .layer(name)
        .map(|l| l.rel.clone())
        .unwrap_or_else(|| format!("layers/{name}/layer.yaml"));
    let dir = yaml.rsplit_once('/').map_or("", |(d, _)| d);
    let files = match dir.is_empty() {
        true => "files".to_string(),
        false => format!("{dir}/files"),
    };
    vec![yaml, files]
}

/// The directory of `m`'s science image, relative to the library root, when it is a layout
/// or archive inside the library.
fn science_layout(lib: &Library, m: &Manifest) -> Option<String> {
    let path = match &m.science.image.image {
        ImageRef::Layout(l) | ImageRef::Archive(l) => &l.path,
        ImageRef::Docker(_) => return None,
    };
    let rel = path.strip_prefix(lib.root()).ok()?;
    let rel = rel.to_str()?.trim_end_matches('/');
    (!rel.is_empty()).then(|| rel.to_string())
}

/// A `build:` manifest whose Dockerfile or build context (in the library) changed.
fn build_reason(lib: &Library, m: &Manifest, files: &[String]) -> Option<Reason> {
    let b = m.build.as_ref()?;
    let dockerfile = b.dockerfile_path();
    if m.git.is_some() && !lib.root().join(&dockerfile).exists() {
        return None; // Built from a repository graft has not fetched.
    }
    let context = b.context_path();
    let inside = |f: &String| {
        *f == dockerfile || context == "." || *f == context || f.starts_with(&format!("{context}/"))
    };
    let hits: Vec<String> = files.iter().filter(|f| inside(f)).cloned().collect();
    (!hits.is_empty()).then(|| Reason {
        kind: "build-changed",
        layer: None,
        message: format!("its Dockerfile {dockerfile} or build context {context} changed"),
        files: hits,
    })
}

/// Why manifest `m` counts as changed, given its old content.
fn manifest_reason(m: &Manifest, old: Option<Vec<u8>>) -> Reason {
    let files = vec![m.rel.clone()];
    let Some(old) = old else {
        return Reason {
            kind: "manifest-added",
            layer: None,
            message: format!("{} is new", m.rel),
            files,
        };
    };
    if m.build.is_some() {
        // A built image has no science reference to compare: any edit is a manifest change.
        return Reason {
            kind: "manifest-changed",
            layer: None,
            message: format!("{} changed", m.rel),
            files,
        };
    }
    let (old_image, old_digest) = old_science(&old);
    let new_digest = m.science.digest.as_ref().map(|d| d.to_string());
    if old_image.as_deref() != Some(m.science.image.text.as_str()) || old_digest != new_digest {
        let was = match (&old_image, &old_digest) {
            (Some(i), Some(d)) => format!("{i}@{d}"),
            (Some(i), None) => i.clone(),
            (None, _) => "unreadable".to_string(),
        };
        let now = match &new_digest {
            Some(d) => format!("{}@{d}", m.science.image.text),
            None => m.science.image.text.clone(),
        };
        return Reason {
            kind: "science-changed",
            layer: None,
            message: format!("science reference changed: {was} -> {now}"),
            files,
        };
    }
    Reason {
        kind: "manifest-changed",
        layer: None,
        message: format!("{} changed", m.rel),
        files,
    }
}

/// `science.image` and `science.digest` of an old manifest, read leniently: an old file that
/// no longer parses just counts as different.
fn old_science(text: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(text) else {
        return (None, None);
    };
    let s = v.get("science");
    let text_of = |k: &str| {
        s.and_then(|s| s.get(k)).and_then(|x| match x {
            serde_yaml_ng::Value::String(s) => Some(s.clone()),
            serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    (text_of("image"), text_of("digest"))
}

/// Check a glob of `change_ignore`/`rebuild_all`; the message says what is wrong.
pub fn check_glob(glob: &str) -> Result<(), String> {
    if glob.is_empty() {
        return Err("an empty pattern matches nothing".into());
    }
    if glob.starts_with('/') {
        return Err(format!(
            "{glob:?} is absolute; patterns are relative to the library root, e.g. docs/**"
        ));
    }
    if glob.split('/').any(|s| s == "..") {
        return Err(format!("{glob:?} leads outside the library ('..')"));
    }
    let mut chars = glob.chars();
    while let Some(c) = chars.next() {
        match c {
            '[' => {
                let mut closed = false;
                let mut first = true;
                for c in chars.by_ref() {
                    if c == ']' && !first {
                        closed = true;
                        break;
                    }
                    first = false;
                }
                if !closed {
                    return Err(format!("unclosed '[' in {glob:?}"));
                }
            }
            // The escaped character is taken as it is.
            '\\' if chars.next().is_none() => {
                return Err(format!("{glob:?} ends with a lone '\\'"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether `path` (relative, `/`-separated) matches `glob`, gitignore style: `*` and `?`
/// within one path segment, `[abc]`/`[a-z]`/`[!a]` classes, `**` any number of segments; a
/// glob without `/` (`*.md`) matches a file name at any depth; a glob that matches a
/// directory (`docs`, `docs/`) matches everything beneath it.
pub fn glob_match(glob: &str, path: &str) -> bool {
    let glob = glob.trim_end_matches('/');
    if glob.is_empty() {
        return false;
    }
    let globs: Vec<&str> = glob.split('/').collect();
    let parts: Vec<&str> = path.split('/').collect();
    if globs.len() == 1 {
        // A name: any segment (a file, or a directory the file is in).
        return parts.iter().any(|p| segment_match(globs[0], p));
    }
    // Anchored at the root; matching a prefix of the path means a directory above it.
    (1..=parts.len()).any(|n| segments_match(&globs, &parts[..n]))
}

pub(crate) fn segments_match(globs: &[&str], parts: &[&str]) -> bool {
    match globs.split_first() {
        None => parts.is_empty(),
        Some((&"**", rest)) => (0..=parts.len()).any(|i| segments_match(rest, &parts[i..])),
        Some((g, rest)) => match parts.split_first() {
            Some((p, prest)) => segment_match(g, p) && segments_match(rest, prest),
            None => false,
        },
    }
}

/// One segment against one glob segment (no `/` in either). Iterative with one backtrack
/// point for `*`, so no pattern takes more than |glob| × |name| steps.
fn segment_match(glob: &str, name: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match g.get(gi) {
            Some('*') => {
                star = Some((gi, ni));
                gi += 1;
                continue;
            }
            Some('?') => Some(gi + 1),
            Some('[') => class(&g, gi, n[ni]),
            Some('\\') if gi + 1 < g.len() => (g[gi + 1] == n[ni]).then_some(gi + 2),
            Some(c) => (*c == n[ni]).then_some(gi + 1),
            None => None,
        };
        match step {
            Some(next) => {
                gi = next;
                ni += 1;
            }
            None => match star {
                Some((sg, sn)) => {
                    gi = sg + 1;
                    ni = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

/// Match `c` against the class starting at `g[start] == '['`: the index after `]` on a match.
fn class(g: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(g.get(i), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < g.len() {
        if g[i] == ']' && !first {
            return (matched != negate).then_some(i + 1);
        }
        first = false;
        if i + 2 < g.len() && g[i + 1] == '-' && g[i + 2] != ']' {
            matched |= g[i] <= c && c <= g[i + 2];
            i += 3;
        } else {
            matched |= g[i] == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_manifests_follow_their_dockerfile_and_context() {
        let dir = tempfile::tempdir().unwrap();
        for (p, text) in [
            ("graft.yaml", "repo: docker://r.example/lib\n"),
            (
                "manifests/a.yaml",
                "name: a\nversion: 1\nbuild: {path: images/a}\n",
            ),
            ("images/a/Dockerfile", "FROM scratch\n"),
            (
                "manifests/g.yaml",
                "name: g\nversion: 1\ngit: {repo: r}\nbuild: {path: images/g}\n",
            ),
        ] {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let lib = Library::open(dir.path()).unwrap();
        let changed = |files: &[&str]| {
            let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
            let set = affected(&lib, "HEAD~1", "c0ffee", &files, |_| {
                Some(b"name: a\n".to_vec())
            });
            set.images
                .iter()
                .map(|a| {
                    (
                        a.manifest.clone(),
                        a.reasons.iter().map(|r| r.kind).collect(),
                    )
                })
                .collect::<Vec<(String, Vec<&str>)>>()
        };
        assert_eq!(
            changed(&["images/a/src/x.py", "images/g/Dockerfile", "README.md"]),
            [("manifests/a.yaml".to_string(), vec!["build-changed"])]
        );
        assert_eq!(
            changed(&["manifests/a.yaml"]),
            [("manifests/a.yaml".to_string(), vec!["manifest-changed"])]
        );
    }

    #[test]
    fn globs_match_like_gitignore() {
        for (g, p) in [
            ("*.md", "README.md"),
            ("*.md", "layers/x/README.md"),
            ("docs", "docs/a/b.txt"),
            ("docs/", "docs/a.txt"),
            ("docs/**", "docs/a/b.txt"),
            ("tests/**/*.py", "tests/a/b/c.py"),
            ("tests/**/*.py", "tests/c.py"),
            ("scripts/*.sh", "scripts/build.sh"),
            ("layers/*/README", "layers/a/README"),
            ("file[0-9].txt", "file7.txt"),
            ("file[!0-9].txt", "fileA.txt"),
            ("a?c", "abc"),
            ("**/ci.yml", ".github/workflows/ci.yml"),
        ] {
            assert!(glob_match(g, p), "{g} should match {p}");
        }
        for (g, p) in [
            ("*.md", "README.txt"),
            ("docs/*", "src/docs/a"),
            ("scripts/*.sh", "scripts/a/build.sh"),
            ("file[0-9].txt", "fileA.txt"),
            ("layers/a", "layers/ab/x"),
            ("a?c", "ac"),
        ] {
            assert!(!glob_match(g, p), "{g} should not match {p}");
        }
        // Many stars against a long name stay linear-ish.
        assert!(!glob_match(&"*a".repeat(50), &"a".repeat(40)));
    }

    #[test]
    fn no_glob_panics() {
        // Every glob of up to 4 characters from the special ones, against a few paths.
        let alphabet = ['*', '?', '[', ']', '!', '-', '\\', 'a', '/'];
        let mut globs = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for g in &globs {
                for c in alphabet {
                    next.push(format!("{g}{c}"));
                }
            }
            globs.extend(next);
            globs.dedup();
        }
        for g in &globs {
            let _ = check_glob(g);
            for p in ["", "a", "a/b", "[", "a/-/!", "\\"] {
                let _ = glob_match(g, p);
            }
        }
    }

    #[test]
    fn bad_globs_are_named() {
        assert!(check_glob("docs/**").is_ok());
        assert!(check_glob("").is_err());
        assert!(check_glob("/abs").unwrap_err().contains("absolute"));
        assert!(check_glob("../x").unwrap_err().contains(".."));
        assert!(check_glob("a[b").unwrap_err().contains("unclosed"));
    }

    #[test]
    fn old_science_is_read_leniently() {
        assert_eq!(
            old_science(b"science:\n  image: oci:x:1\n"),
            (Some("oci:x:1".into()), None)
        );
        assert_eq!(old_science(b": : :\n\t"), (None, None));
    }
}
