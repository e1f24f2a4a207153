//! Tag policy per branch: which tag templates a run writes, decided by the branch it runs on.
//!
//! The default branch writes each manifest's `tags` (the production tags: `{version}`,
//! `{version}-{build}-{commit}`). Any other branch writes the templates of the first entry of
//! `graft.yaml`'s `branches:` whose pattern matches its name, else only `{version}-{branch}`:
//! a feature branch never overwrites a production tag unless the policy says so.
//!
//! Which branch a run is on, and which branch is the default, is found at the edge
//! ([`crate::ops::plan::revision`]: flags, git, CI variables) and given to the library as a
//! [`Branch`] ([`super::Library::with_branch`]).

use serde::Serialize;

use super::changes::segments_match;

/// The index annotation that records the branch an image was made from (as git names it,
/// before sanitising: two branches can sanitise to one tag).
pub const BRANCH_ANNOTATION: &str = "org.graft.branch";

/// What a branch other than the default writes when no entry of `branches:` matches it.
pub const OTHER_BRANCH_TAGS: [&str; 1] = ["{version}-{branch}"];

/// One entry of `graft.yaml`'s `branches:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BranchRule {
    /// A pattern of branch names: `*` matches within one `/`-separated part, `**` any number
    /// of parts, `?` one character, `[a-z]` a class (`release/*`, `feature/**`, `**`).
    pub branch: String,
    /// The tag templates a matching branch writes.
    pub tags: Vec<String>,
}

impl BranchRule {
    /// Whether `branch` (as git names it, e.g. `feature/x`) matches this entry's pattern.
    pub fn matches(&self, branch: &str) -> bool {
        let globs: Vec<&str> = self.branch.split('/').collect();
        let parts: Vec<&str> = branch.split('/').collect();
        segments_match(&globs, &parts)
    }
}

/// The branch a run is on, as decided at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Branch {
    /// The branch name (`feature/x`).
    pub name: String,
    /// The default branch it was compared with, when known.
    pub default_branch: Option<String>,
    /// Whether the run writes the default branch's (production) tags.
    pub is_default: bool,
}

/// The tags one branch rule gives an image (a row of `graft plan`'s per-branch table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BranchTags {
    /// The default branch's name (`main`), a `branches:` pattern, or `**` for the fallback.
    pub branch: String,
    /// Whether this row is the default branch.
    pub default: bool,
    /// The tags, expanded for this image (`{branch}` and unknown values kept visible).
    pub tags: Vec<String>,
    /// Whether the run this plan was made for writes this row.
    pub current: bool,
}

/// Which tag templates of `rules` a non-default `branch` writes: the first matching entry's,
/// else [`OTHER_BRANCH_TAGS`]. Returns the index of the entry (`None` for the fallback).
pub fn rule_for<'a>(rules: &'a [BranchRule], branch: &str) -> (Option<usize>, Vec<&'a str>) {
    match rules.iter().position(|r| r.matches(branch)) {
        Some(i) => (Some(i), rules[i].tags.iter().map(String::as_str).collect()),
        None => (None, OTHER_BRANCH_TAGS.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(b: &str) -> BranchRule {
        BranchRule {
            branch: b.into(),
            tags: vec![format!("{{version}}-{b}")],
        }
    }

    #[test]
    fn patterns_match_whole_branch_names() {
        assert!(rule("release/*").matches("release/1.0"));
        assert!(!rule("release/*").matches("release/1.0/x"));
        assert!(!rule("release/*").matches("hotfix/release/1"));
        assert!(rule("feature/**").matches("feature/a/b"));
        assert!(rule("**").matches("a/b/c"));
        assert!(rule("*").matches("dev"));
        assert!(!rule("*").matches("dev/x"));
        // A plain name is the branch itself, not a name at any depth.
        assert!(!rule("main").matches("feature/main"));
        let rules = [rule("release/*"), rule("**")];
        assert_eq!(rule_for(&rules, "release/2").0, Some(0));
        assert_eq!(rule_for(&rules, "x/y").0, Some(1));
        assert_eq!(
            rule_for(&rules[..1], "x"),
            (None, vec!["{version}-{branch}"])
        );
    }
}
