//! Names of base images, derived from their references: valid Kubernetes names (a Warehouse is
//! named after its base), stable, and distinct across registries.
//!
//! The rule (docs/factory.md): the last path component of the repository, then the tag (or
//! the first 12 hex digits of a pinned digest), lowercased, every run of other characters
//! turned into one `-`: `node:22-bookworm-slim` ⇒ `node-22-bookworm-slim`. When two different
//! references of one sync give the same short name (`docker.io/library/node:22` and
//! `ghcr.io/acme/node:22`), each one not on Docker Hub's `library/` gets `-` and 8 hex digits
//! of the SHA-256 of its full reference: Docker Hub's official images keep the seed's short
//! names, and the suffix depends only on the reference, so it is the same on every machine.
//! A name longer than 63 characters is cut to 54 and given the same suffix.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use crate::reference::{DockerRef, DOCKER_HUB_HOST};

/// Whether `s` is a DNS-1123 label: 1 to 63 of `[a-z0-9-]`, starting and ending with a letter
/// or digit.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// How a reference is written in state files: Docker Hub as `docker.io`, the tag, a digest.
pub fn full_image(r: &DockerRef) -> String {
    let short = r.to_string();
    match short.strip_prefix(&format!("{DOCKER_HUB_HOST}/")) {
        Some(rest) => match rest.strip_prefix("library/") {
            Some(official) => official.to_string(),
            None => rest.to_string(),
        },
        None => short,
    }
}

/// `registry/repository` with Docker Hub as `docker.io` (Kargo's `repoURL`).
pub fn repo_url(r: &DockerRef) -> String {
    format!("{}/{}", display_registry(&r.registry), r.repository)
}

/// A registry host as users write it (`docker.io`, not the API host).
pub fn display_registry(host: &str) -> &str {
    if host == DOCKER_HUB_HOST {
        "docker.io"
    } else {
        host
    }
}

fn hash8(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..8].to_string()
}

/// The short name of `r` before collisions are looked at.
pub fn short_name(r: &DockerRef) -> String {
    let last = r.repository.rsplit('/').next().unwrap_or(&r.repository);
    let version = match (&r.tag, &r.digest) {
        (Some(t), _) => t.clone(),
        (None, Some(d)) => d.hex().chars().take(12).collect(),
        (None, None) => "latest".into(),
    };
    let raw = format!("{last}-{version}").to_lowercase();
    let mut out = String::new();
    for c in raw.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        return format!("image-{}", hash8(&r.to_string()));
    }
    if out.len() > 63 {
        return format!(
            "{}-{}",
            out[..54].trim_end_matches('-'),
            hash8(&r.to_string())
        );
    }
    out
}

/// Names for every reference of one sync, by the rule above.
/// `refs` is keyed by each reference's `to_string()`; so is the answer.
pub fn assign(refs: &BTreeMap<String, DockerRef>) -> BTreeMap<String, String> {
    let mut by_short: BTreeMap<String, Vec<&DockerRef>> = BTreeMap::new();
    for r in refs.values() {
        by_short.entry(short_name(r)).or_default().push(r);
    }
    let mut out = BTreeMap::new();
    for (short, group) in by_short {
        for r in &group {
            let official = r.registry == DOCKER_HUB_HOST && r.repository.starts_with("library/");
            let name = if group.len() == 1 || official {
                short.clone()
            } else {
                let base = if short.len() > 54 {
                    short[..54].trim_end_matches('-')
                } else {
                    short.as_str()
                };
                format!("{base}-{}", hash8(&r.to_string()))
            };
            out.insert(r.to_string(), name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> DockerRef {
        DockerRef::parse(s).unwrap()
    }

    #[test]
    fn seed_names() {
        assert_eq!(
            short_name(&r("node:22-bookworm-slim")),
            "node-22-bookworm-slim"
        );
        assert_eq!(
            full_image(&r("node:22-bookworm-slim")),
            "node:22-bookworm-slim"
        );
        assert_eq!(repo_url(&r("node:22")), "docker.io/library/node");
        assert_eq!(
            short_name(&r("ghcr.io/a/py_thon:3.12__X")),
            "py-thon-3-12-x"
        );
    }

    #[test]
    fn no_collision_across_registries() {
        let set: BTreeMap<String, DockerRef> = [
            r("node:22"),
            r("ghcr.io/acme/node:22"),
            r("quay.io/x/node:22"),
            r("alpine:3"),
        ]
        .into_iter()
        .map(|r| (r.to_string(), r))
        .collect();
        let names = assign(&set);
        let distinct: std::collections::BTreeSet<&String> = names.values().collect();
        assert_eq!(distinct.len(), 4);
        assert_eq!(names[&r("node:22").to_string()], "node-22");
        assert_eq!(names[&r("alpine:3").to_string()], "alpine-3");
        assert!(names[&r("ghcr.io/acme/node:22").to_string()].starts_with("node-22-"));
        for n in names.values() {
            assert!(is_dns_label(n), "{n}");
        }
        // Deterministic: the same set gives the same names.
        assert_eq!(assign(&set), names);
    }

    #[test]
    fn long_names_are_cut() {
        let long = format!("ghcr.io/a/{}:1", "x".repeat(80));
        let n = short_name(&r(&long));
        assert!(is_dns_label(&n) && n.len() <= 63, "{n}");
    }
}
