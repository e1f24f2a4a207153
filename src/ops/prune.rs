//! `graft prune --branch-tags`: delete the tags feature branches left behind once their
//! branch is gone, without ever taking a production tag with them.
//!
//! **Which tags.** A refresh records the branch it ran on, as git names it, in the
//! `org.graft.branch` annotation of the root it writes ([`BRANCH_ANNOTATION`]). A tag is a
//! candidate when its root carries that annotation, the branch is neither the library's
//! default branch nor one of the branches the library's git remote lists now (`git
//! ls-remote --heads`), and the tag is one that branch writes: it matches one of the branch's
//! tag templates (graft.yaml's `branches:`, else `{version}-{branch}`) for a version of the
//! repository, `{build}` and `{commit}` matching any value. The annotation decides which
//! branch, not the tag: two branches can sanitise to one tag (`feat/a` and `feat+a` both
//! write `…-feat-a`), and only the annotation says which of them made the image the tag points
//! at now. The template decides that it is a branch tag: `stable` promoted from a branch image
//! carries the same annotation, and is not the branch's to prune. A tag without the
//! annotation (made before it existed, or by another tool) is never a candidate.
//!
//! **What is deleted.** The distribution API deletes manifests by digest only, and that takes
//! every tag on the digest: so a candidate's digest is deleted only when every tag on it is a
//! candidate too. A digest also tagged by anything else (`stable`, a release tag, a tag of a
//! live branch) is kept, and the report names the tag that keeps it; so is one when a listed
//! tag does not resolve (it might be on the digest). These are [`crate::ops::tag::delete`]'s
//! rules, applied per digest instead of refusing the whole run. Only manifests are deleted:
//! blobs are the registry's garbage collection (an OCI layout keeps them, and the report says
//! so). Between the listing and the delete another writer may still tag a digest; the
//! registry has no conditional delete to close that window.
//!
//! **Cost.** Per target repository: one tag listing, one manifest GET per tag (a HEAD for
//! digest-derived tags such as `sha256-….sig`, which carry no branch), a few at once, and
//! one DELETE per pruned digest. Nothing below a root is read.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::library::branches::{rule_for, BRANCH_ANNOTATION};
use crate::library::git::Repo;
use crate::library::load::locate;
use crate::library::template::{self, Piece};
use crate::library::Library;
use crate::oci::Digest;
use crate::ops::tag::{delete_digest, is_digest_tag, on_digest, store_note, Listing};
use crate::store::open::{open_repository, Endpoint};
use crate::store::repo::Repository;

/// Manifest reads in flight at once per repository.
const READ_JOBS: usize = 8;

/// What to prune, and how.
#[derive(Debug, Clone)]
pub struct PruneRequest {
    /// The git remote whose branches count: a remote name (`origin`) or a URL or path.
    pub remote: String,
    /// Longest wait for each `git ls-remote`.
    pub timeout: Duration,
    /// Decide and report; delete nothing.
    pub dry_run: bool,
}

/// A manifest pruned (or, in a dry run, to prune).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PrunedManifest {
    /// Its digest.
    pub digest: Digest,
    /// Every tag that pointed at it (all branch tags of gone branches).
    pub tags: Vec<String>,
    /// The branches they were made from.
    pub branches: Vec<String>,
}

/// Why a branch tag was kept.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KeepReason {
    /// Its branch still exists on the remote.
    BranchExists,
    /// Its branch is the library's default branch.
    DefaultBranch,
    /// Its branch is gone, but other tags point at its digest, and a delete would take them
    /// too ([`KeptTag::kept_by`]).
    SharedDigest,
    /// Its branch is gone, but a listed tag does not resolve and might point at its digest
    /// ([`KeptTag::kept_by`]).
    UnresolvedTag,
    /// Its branch is gone, but the tag is not one that branch writes (`stable` promoted from
    /// a branch image): it is not the branch's to prune.
    NotABranchTag,
}

/// A tag carrying a branch annotation that was not pruned.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeptTag {
    /// The tag.
    pub tag: String,
    /// The digest it points at.
    pub digest: Digest,
    /// The branch its annotation names.
    pub branch: String,
    /// Why it stays.
    pub reason: KeepReason,
    /// The tags that keep it (for [`KeepReason::SharedDigest`] and
    /// [`KeepReason::UnresolvedTag`]), sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_by: Vec<String>,
}

/// One target repository of the library.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RepositoryPrune {
    /// The repository as the library writes it (`docker://host/repo`, `oci:DIR`).
    pub repository: String,
    /// Whether it exists (a repository no refresh has written has nothing to prune).
    pub exists: bool,
    /// The manifests deleted (or to delete), in tag order.
    pub pruned: Vec<PrunedManifest>,
    /// The branch tags kept, in tag order.
    pub kept: Vec<KeptTag>,
}

/// What [`prune_branch_tags`] did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PruneReport {
    /// Nothing was deleted: the report says what would have been.
    pub dry_run: bool,
    /// The git remote asked.
    pub remote: String,
    /// The default branch (never pruned).
    pub default_branch: String,
    /// The branches the remote has.
    pub branches: Vec<String>,
    /// One entry per target repository, in manifest order.
    pub repositories: Vec<RepositoryPrune>,
    /// What people should know about the stores (an OCI layout keeps the blobs).
    pub notes: Vec<String>,
}

/// One tag as read: its digest and branch annotation.
struct TagInfo {
    tag: String,
    digest: Option<Digest>,
    branch: Option<String>,
}

/// Prune the branch tags of every target repository of `lib` whose branch is gone from the
/// library's git remote (see the module docs). Errors: the library is not in git, the remote
/// is unknown or does not answer (within the timeout), the default branch is unknown or
/// missing from the remote, or it lists no branch at all (a wrong remote would otherwise
/// prune every branch tag); a registry that refuses deletes (naming
/// `storage.delete.enabled`).
pub async fn prune_branch_tags(
    lib: &Library,
    req: &PruneRequest,
    ep: &Endpoint,
) -> Result<PruneReport> {
    let Some(git) = Repo::discover(lib.root()) else {
        return Err(Error::Unsupported(format!(
            "the library {} is not in a git repository: graft prune --branch-tags asks the \
             library's git remote which branches still exist",
            lib.root().display()
        )));
    };
    // The default branch: graft.yaml's, else the one the clone recorded for origin, else the
    // remote's HEAD (asked with the branches).
    let configured = lib.settings().default_branch.clone().or_else(|| {
        (req.remote == "origin")
            .then(|| git.remote_default_branch())
            .flatten()
    });
    let remote = git.remote_heads(&req.remote, configured.is_none(), req.timeout)?;
    let Some(default_branch) = configured.or(remote.head.clone()) else {
        return Err(Error::Unsupported(format!(
            "cannot tell the library's default branch (its tags are never pruned): set \
             default_branch in {}",
            lib.settings().file.display()
        )));
    };
    if remote.heads.is_empty() {
        return Err(Error::Invalid {
            what: format!("git remote {}", remote.remote),
            reason: "it lists no branches; nothing was pruned (with no branch, every branch \
                     tag would look abandoned: is this the library's remote?)"
                .into(),
        });
    }
    if !remote.heads.contains(&default_branch) {
        return Err(Error::Invalid {
            what: format!("git remote {}", remote.remote),
            reason: format!(
                "it has no branch {default_branch:?}, the library's default branch; nothing \
                 was pruned (is this the library's remote? branches there: {})",
                remote.heads.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let gone = |b: &str| b != default_branch && !remote.heads.contains(b);
    let rules = &lib.settings().branches;

    // The target repositories, each once, in manifest order, with their versions.
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    for m in lib.manifests() {
        let t = lib.target_text(m);
        match targets.iter_mut().find(|(x, _)| *x == t) {
            Some((_, versions)) => versions.push(m.version.clone()),
            None => targets.push((t, vec![m.version.clone()])),
        }
    }
    let mut report = PruneReport {
        dry_run: req.dry_run,
        // As asked, credentials removed (a URL may carry a token).
        remote: remote.remote.clone(),
        default_branch: default_branch.clone(),
        branches: remote.heads.iter().cloned().collect(),
        repositories: Vec::new(),
        notes: Vec::new(),
    };
    // Everything is read and decided before the first delete.
    let mut work: Vec<(Box<dyn Repository>, Vec<PrunedManifest>)> = Vec::new();
    for (text, versions) in targets {
        let image = locate(lib.root(), &text)?.image;
        let is_branch_tag = |tag: &str, branch: &str| {
            let (_, templates) = rule_for(rules, branch);
            templates
                .iter()
                .any(|t| versions.iter().any(|v| template_matches(t, tag, v, branch)))
        };
        let opened = match open_repository(&image, ep, false) {
            Ok(r) => Some(r),
            Err(e) if is_missing(&e) => None,
            Err(e) => return Err(e),
        };
        let infos = match &opened {
            Some(r) => read_tags(r.as_ref()).await?,
            None => None,
        };
        let Some(infos) = infos else {
            report.repositories.push(RepositoryPrune {
                repository: text,
                exists: false,
                pruned: Vec::new(),
                kept: Vec::new(),
            });
            continue;
        };
        let (pruned, kept) = decide(&infos, &default_branch, &gone, &is_branch_tag);
        report.repositories.push(RepositoryPrune {
            repository: text,
            exists: true,
            pruned: pruned.clone(),
            kept,
        });
        if let Some(repo) = opened {
            if !pruned.is_empty() {
                if let Some(note) = store_note(repo.as_ref()) {
                    report.notes.push(note);
                }
                work.push((repo, pruned));
            }
        }
    }
    if !req.dry_run {
        for (repo, pruned) in &work {
            for p in pruned {
                delete_digest(repo.as_ref(), &p.digest, &p.tags).await?;
            }
        }
    }
    Ok(report)
}

/// Whether `e` says the repository does not exist (yet).
fn is_missing(e: &Error) -> bool {
    matches!(
        e.root(),
        Error::NotFound { .. } | Error::Registry { status: 404, .. }
    )
}

/// Every tag of `repo` with its digest and branch annotation; `None` when the repository
/// does not exist.
async fn read_tags(repo: &dyn Repository) -> Result<Option<Vec<TagInfo>>> {
    let tags = match repo.list_tags().await {
        Ok(t) => t,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let infos = futures::stream::iter(tags)
        .map(|tag| async move {
            // Digest-derived tags (signatures, attestations, referrer fallbacks) carry no
            // branch: a HEAD is enough to know where they point.
            if is_digest_tag(&tag) {
                let digest = repo.resolve(&tag).await?;
                return Ok::<_, Error>(TagInfo {
                    tag,
                    digest,
                    branch: None,
                });
            }
            let root = repo
                .tagged(&tag)
                .await
                .map_err(|e| e.context(format!("reading {} to find its branch", repo.name())))?;
            Ok(match root {
                Some(m) => TagInfo {
                    branch: m
                        .view()
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(BRANCH_ANNOTATION))
                        .cloned(),
                    digest: Some(m.digest().clone()),
                    tag,
                },
                None => TagInfo {
                    tag,
                    digest: None,
                    branch: None,
                },
            })
        })
        .buffered(READ_JOBS)
        .try_collect()
        .await?;
    Ok(Some(infos))
}

/// Whether `tag` is what the tag template `template` gives for `version` on `branch` (as
/// git names it): `{version}` and `{branch}` (sanitised, maybe cut to fit 128 characters as
/// [`template::expand_tag`] cuts it) must match exactly, `{build}`, `{commit}` and anything
/// else match any non-empty text.
pub fn template_matches(template: &str, tag: &str, version: &str, branch: &str) -> bool {
    let Ok(pieces) = template::parse(template) else {
        return false;
    };
    let branch = template::sanitize_branch(branch);
    let uses = pieces
        .iter()
        .filter(|p| **p == Piece::Placeholder("branch"))
        .count();
    // expand_tag cuts the branch (each use alike) only when the whole tag would be too long;
    // the cut tag is then longer than MAX_TAG - uses.
    let cut = uses > 0 && tag.len() + uses > template::MAX_TAG;
    // Backtracking over the free placeholders, memoised on (piece, offset into the tag): each
    // state is decided once, so k placeholders cost O(pieces × len²), not O(len^k).
    struct Matcher<'a> {
        pieces: &'a [Piece<'a>],
        tag: &'a str,
        version: &'a str,
        branch: &'a str,
        cut: bool,
        failed: std::collections::HashSet<(usize, usize)>,
    }
    impl Matcher<'_> {
        fn go(&mut self, piece: usize, at: usize) -> bool {
            let Some(first) = self.pieces.get(piece) else {
                return at == self.tag.len();
            };
            if self.failed.contains(&(piece, at)) {
                return false;
            }
            let rest = &self.tag[at..];
            let literal =
                |m: &mut Self, lit: &str| rest.starts_with(lit) && m.go(piece + 1, at + lit.len());
            let found = match *first {
                Piece::Text(t) => literal(self, t),
                Piece::Placeholder("version") => literal(self, self.version),
                Piece::Placeholder("branch") if !self.cut => literal(self, self.branch),
                Piece::Placeholder("branch") => {
                    let branch = self.branch;
                    (1..=branch.len())
                        .filter(|n| branch.is_char_boundary(*n))
                        .any(|n| literal(self, &branch[..n]))
                }
                Piece::Placeholder(_) => (1..=rest.len())
                    .filter(|n| rest.is_char_boundary(*n))
                    .any(|n| self.go(piece + 1, at + n)),
            };
            if !found {
                self.failed.insert((piece, at));
            }
            found
        }
    }
    Matcher {
        pieces: &pieces,
        tag,
        version,
        branch: &branch,
        cut,
        failed: std::collections::HashSet::new(),
    }
    .go(0, 0)
}

/// Sort the tags of one repository into the manifests to prune and the branch tags kept.
/// `is_branch_tag(tag, branch)`: whether `branch` writes `tag`.
fn decide(
    infos: &[TagInfo],
    default_branch: &str,
    gone: &dyn Fn(&str) -> bool,
    is_branch_tag: &dyn Fn(&str, &str) -> bool,
) -> (Vec<PrunedManifest>, Vec<KeptTag>) {
    let listing: Listing = infos
        .iter()
        .map(|i| (i.tag.clone(), i.digest.clone()))
        .collect();
    // The candidates: tags of a gone branch that it writes.
    let candidate = |i: &TagInfo| {
        i.digest.is_some()
            && i.branch
                .as_deref()
                .is_some_and(|b| gone(b) && is_branch_tag(&i.tag, b))
    };
    let candidates: Vec<String> = infos
        .iter()
        .filter(|i| candidate(i))
        .map(|i| i.tag.clone())
        .collect();
    let mut verdicts: BTreeMap<Digest, std::result::Result<(), (KeepReason, Vec<String>)>> =
        BTreeMap::new();
    let mut pruned: Vec<PrunedManifest> = Vec::new();
    let mut kept = Vec::new();
    for i in infos {
        let (Some(digest), Some(branch)) = (&i.digest, &i.branch) else {
            continue;
        };
        if !candidate(i) {
            kept.push(KeptTag {
                tag: i.tag.clone(),
                digest: digest.clone(),
                branch: branch.clone(),
                reason: if branch == default_branch {
                    KeepReason::DefaultBranch
                } else if !gone(branch) {
                    KeepReason::BranchExists
                } else {
                    KeepReason::NotABranchTag
                },
                kept_by: Vec::new(),
            });
            continue;
        }
        let verdict = verdicts.entry(digest.clone()).or_insert_with(|| {
            let found = on_digest(&listing, digest, &candidates);
            if !found.others.is_empty() {
                Err((KeepReason::SharedDigest, found.others))
            } else if !found.unresolved.is_empty() {
                Err((KeepReason::UnresolvedTag, found.unresolved))
            } else {
                Ok(())
            }
        });
        match verdict {
            Ok(()) => match pruned.iter_mut().find(|p| &p.digest == digest) {
                Some(p) => {
                    p.tags.push(i.tag.clone());
                    if !p.branches.contains(branch) {
                        p.branches.push(branch.clone());
                    }
                }
                None => pruned.push(PrunedManifest {
                    digest: digest.clone(),
                    tags: vec![i.tag.clone()],
                    branches: vec![branch.clone()],
                }),
            },
            Err((reason, by)) => kept.push(KeptTag {
                tag: i.tag.clone(),
                digest: digest.clone(),
                branch: branch.clone(),
                reason: *reason,
                kept_by: by.clone(),
            }),
        }
    }
    (pruned, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::sha256(&[n])
    }

    fn info(tag: &str, digest: Option<u8>, branch: Option<&str>) -> TagInfo {
        TagInfo {
            tag: tag.into(),
            digest: digest.map(d),
            branch: branch.map(str::to_string),
        }
    }

    #[test]
    fn only_whole_digests_of_gone_branches_are_pruned() {
        let live = ["main", "dev", "feat/a"];
        let gone = |b: &str| !live.contains(&b);
        let infos = [
            info("2.4", Some(1), Some("main")),
            // Promoted from the `old` branch's image: same annotation, not a branch tag.
            info("stable", Some(2), Some("old")),
            // Gone branch, digest shared with `stable`: kept, named.
            info("2.4-old", Some(2), Some("old")),
            // Gone branch, two tags on one digest, both candidates: pruned together.
            info("2.4-gone", Some(3), Some("gone")),
            info("2.4-gone-2", Some(3), Some("gone")),
            // Same tag text a live branch would write, but the annotation names a gone one.
            info("2.4-feat-a", Some(4), Some("feat+a")),
            info("2.4-dev", Some(5), Some("dev")),
            info("sha256-abc.sig", Some(6), None),
        ];
        let branch_tag = |t: &str, _: &str| t.starts_with("2.4-");
        let (pruned, kept) = decide(&infos, "main", &gone, &branch_tag);
        assert_eq!(
            pruned,
            vec![
                PrunedManifest {
                    digest: d(3),
                    tags: vec!["2.4-gone".into(), "2.4-gone-2".into()],
                    branches: vec!["gone".into()],
                },
                PrunedManifest {
                    digest: d(4),
                    tags: vec!["2.4-feat-a".into()],
                    branches: vec!["feat+a".into()],
                },
            ]
        );
        let reasons: Vec<(&str, KeepReason, Vec<String>)> = kept
            .iter()
            .map(|k| (k.tag.as_str(), k.reason, k.kept_by.clone()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("2.4", KeepReason::DefaultBranch, vec![]),
                ("stable", KeepReason::NotABranchTag, vec![]),
                (
                    "2.4-old",
                    KeepReason::SharedDigest,
                    vec!["stable".to_string()]
                ),
                ("2.4-dev", KeepReason::BranchExists, vec![]),
            ]
        );
    }

    #[test]
    fn an_unresolved_tag_keeps_every_candidate() {
        let gone = |b: &str| b != "main";
        let infos = [info("2.4-x", Some(1), Some("x")), info("ghost", None, None)];
        let (pruned, kept) = decide(&infos, "main", &gone, &|_, _| true);
        assert!(pruned.is_empty());
        assert_eq!(kept[0].reason, KeepReason::UnresolvedTag);
        assert_eq!(kept[0].kept_by, vec!["ghost".to_string()]);
    }

    #[test]
    fn many_placeholders_match_in_polynomial_time() {
        // Every split fits until the last literal: without memoising, 128^4 tries.
        let tag = "a".repeat(128);
        assert!(!template_matches(
            "{build}a{commit}a{build}a{commit}b",
            &tag,
            "1",
            "main"
        ));
        // Eight: about 10^12 tries without memoising.
        let eight = "{build}a{commit}a".repeat(4) + "b";
        assert!(!template_matches(&eight, &"a".repeat(128), "1", "main"));
        let tag = format!("{}b", "a".repeat(127));
        assert!(template_matches(
            "{build}a{commit}a{build}a{commit}b",
            &tag,
            "1",
            "main"
        ));
    }

    #[test]
    fn branch_tags_are_matched_by_their_templates() {
        let m = |t: &str, tag: &str, b: &str| template_matches(t, tag, "2.4", b);
        assert!(m("{version}-{branch}", "2.4-feat-a", "feat/a"));
        assert!(m("{version}-{branch}", "2.4-feat-a", "feat+a"));
        assert!(!m("{version}-{branch}", "2.4-feat-b", "feat/a"));
        assert!(!m("{version}-{branch}", "stable", "feat/a"));
        assert!(!m("{version}-{branch}", "2.5-feat-a", "feat/a"));
        assert!(m(
            "{version}-{branch}-{build}-{commit}",
            "2.4-dev-12-abc1234",
            "dev"
        ));
        assert!(!m(
            "{version}-{branch}-{build}-{commit}",
            "2.4-dev-12",
            "dev"
        ));
        assert!(m("{version}", "2.4", "release/2"));
        // A branch cut to fit 128 characters, as expand_tag cuts it.
        let long = "x".repeat(200);
        let b = crate::library::template::BuildInfo {
            branch: Some(long.clone()),
            ..Default::default()
        };
        let tag = template::expand_tag("{version}-{branch}", "2.4", &b);
        assert_eq!(tag.len(), 128);
        assert!(m("{version}-{branch}", &tag, &long));
        assert!(!m("{version}-{branch}", "2.4-xx", &long));
    }
}
