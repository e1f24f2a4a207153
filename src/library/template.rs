//! Tag and target templates: `{version}`, `{build}`, `{commit}`, `{branch}` in tags;
//! `{repo}` and `{name}` in `graft.yaml`'s `target`.

use serde::Serialize;

/// The placeholders a tag template may use.
pub const TAG_PLACEHOLDERS: [&str; 4] = ["version", "build", "commit", "branch"];

/// The placeholders `target` may use.
pub const TARGET_PLACEHOLDERS: [&str; 2] = ["repo", "name"];

/// Build identity shared by every image of one run: the library's build number, commit and
/// branch (from flags, or from `git` at the command-line edge). Missing values stay visible
/// as `{build}`, `{commit}`, `{branch}` in previews and are errors where real tags are needed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuildInfo {
    /// Build number (`git rev-list --count HEAD`).
    pub build: Option<String>,
    /// Short commit (`git rev-parse --short HEAD`).
    pub commit: Option<String>,
    /// Branch name, as is (`feature/x`); sanitised when put into a tag.
    pub branch: Option<String>,
}

impl BuildInfo {
    /// The values `graft validate` expands templates with to compare final references across
    /// manifests: equal expansions mean the two templates collide on every build.
    pub fn sentinel() -> BuildInfo {
        BuildInfo {
            build: Some("9999".into()),
            commit: Some("0123abc".into()),
            branch: Some("main".into()),
        }
    }
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Literal text.
    Text(&'a str),
    /// `{name}`.
    Placeholder(&'a str),
}

/// Split a template into text and placeholders. `{{` and `}}` are not special: braces are not
/// valid in tags or repositories anyway. An unclosed `{` is an error (its byte offset).
pub fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {template:?}"))?;
        out.push(Piece::Placeholder(&after[..close]));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// The placeholders of `template` not in `allowed`, as a message, if any.
pub fn check(template: &str, allowed: &[&str]) -> Result<(), String> {
    for piece in parse(template)? {
        if let Piece::Placeholder(p) = piece {
            if !allowed.contains(&p) {
                let list: Vec<String> = allowed.iter().map(|a| format!("{{{a}}}")).collect();
                return Err(format!(
                    "unknown placeholder {{{p}}} in {template:?}; use {}",
                    list.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// Expand with `lookup`; placeholders it has no value for are kept as `{name}`.
pub fn expand(template: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let Ok(pieces) = parse(template) else {
        return template.to_string();
    };
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Placeholder(p) => match lookup(p) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push('{');
                    out.push_str(p);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// Most characters of a tag (the distribution spec's limit).
pub const MAX_TAG: usize = 128;

/// Expand a tag template for `version` and `build`. `{branch}` is sanitised
/// ([`sanitize_branch`]) and cut so that the whole tag stays within [`MAX_TAG`]: a long
/// branch name must not make a branch run fail.
pub fn expand_tag(template: &str, version: &str, build: &BuildInfo) -> String {
    let fixed = |branch: &str| {
        expand(template, |p| match p {
            "version" => Some(version.to_string()),
            "build" => build.build.clone(),
            "commit" => build.commit.clone(),
            "branch" => Some(branch.to_string()),
            _ => None,
        })
    };
    let Some(branch) = build.branch.as_deref().map(sanitize_branch) else {
        return expand(template, |p| match p {
            "version" => Some(version.to_string()),
            "build" => build.build.clone(),
            "commit" => build.commit.clone(),
            _ => None,
        });
    };
    let full = fixed(&branch);
    if full.len() <= MAX_TAG {
        return full;
    }
    // The rest of the tag without the branch, per occurrence of `{branch}`.
    let uses = parse(template)
        .map(|p| {
            p.iter()
                .filter(|p| **p == Piece::Placeholder("branch"))
                .count()
        })
        .unwrap_or(0);
    if uses == 0 {
        return full;
    }
    let rest = fixed("").len();
    let keep = (MAX_TAG.saturating_sub(rest) / uses).max(1);
    // Sanitised branches are ASCII: cutting at a byte is cutting at a character.
    fixed(&branch[..keep.min(branch.len())])
}

/// The placeholders of `template` that `build` has no value for.
pub fn missing(template: &str, build: &BuildInfo) -> Vec<&'static str> {
    let Ok(pieces) = parse(template) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for piece in pieces {
        let m = match piece {
            Piece::Placeholder("build") if build.build.is_none() => "build",
            Piece::Placeholder("commit") if build.commit.is_none() => "commit",
            Piece::Placeholder("branch") if build.branch.is_none() => "branch",
            _ => continue,
        };
        if !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

/// A branch name as a tag fragment: lowercase; characters other than letters, digits, `_`,
/// `.` and `-` (`/` among them) become `-` (`Feature/X` → `feature-x`); it starts with a
/// letter, digit or `_` (leading `.`/`-` dropped; `_` when nothing is left) and has at most
/// [`MAX_TAG`] characters.
pub fn sanitize_branch(branch: &str) -> String {
    let s: String = branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_start_matches(['.', '-']);
    match s.is_empty() {
        true => "_".to_string(),
        false => s[..s.len().min(MAX_TAG)].to_string(),
    }
}

/// Expand `graft.yaml`'s target for one image.
pub fn expand_target(template: &str, repo: &str, name: &str) -> String {
    expand(template, |p| match p {
        "repo" => Some(repo.trim_end_matches('/').to_string()),
        "name" => Some(name.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_and_keeps_missing_visible() {
        let b = BuildInfo {
            build: Some("42".into()),
            commit: None,
            branch: Some("feature/x".into()),
        };
        assert_eq!(
            expand_tag("{version}-{build}-{commit}", "2.4", &b),
            "2.4-42-{commit}"
        );
        assert_eq!(expand_tag("{branch}", "1", &b), "feature-x");
        let odd = BuildInfo {
            branch: Some("-Fix/Ü ber".into()),
            ..BuildInfo::default()
        };
        assert_eq!(expand_tag("{version}-{branch}", "1", &odd), "1-fix---ber");
        assert_eq!(sanitize_branch("///"), "_");
        // A long branch is cut so the whole tag is a valid tag.
        let long = BuildInfo {
            branch: Some("x".repeat(300)),
            ..BuildInfo::default()
        };
        let tag = expand_tag("{version}-{branch}", "2.4", &long);
        assert_eq!(tag.len(), MAX_TAG);
        assert!(tag.starts_with("2.4-xxx"));
        assert!(crate::reference::validate_tag(&tag).is_ok());
        assert_eq!(missing("{version}-{build}-{commit}", &b), vec!["commit"]);
        assert_eq!(
            expand_target("{repo}/rel/{name}", "docker://r/x/", "a"),
            "docker://r/x/rel/a"
        );
    }

    #[test]
    fn unknown_placeholders_are_named() {
        assert_eq!(
            check("{version}-{sha}", &TAG_PLACEHOLDERS).unwrap_err(),
            "unknown placeholder {sha} in \"{version}-{sha}\"; use {version}, {build}, {commit}, {branch}"
        );
        assert_eq!(
            check("{version", &TAG_PLACEHOLDERS).unwrap_err(),
            "unclosed '{' in \"{version\""
        );
    }
}
