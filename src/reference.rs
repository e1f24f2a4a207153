//! Image references and transports, skopeo-style:
//! `docker://[host[:port]/]repo[:tag][@digest]`, `oci:DIR[:tag]`, `oci-archive:FILE[:tag]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::oci::Digest;

/// Docker Hub's registry host.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// A reference to an image in some transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// An image in a registry.
    Docker(DockerRef),
    /// An image in an OCI image layout directory.
    Layout(LayoutRef),
    /// An image in a tar archive of an OCI image layout.
    Archive(LayoutRef),
}

/// A path plus optional tag, for `oci:` and `oci-archive:`. As in skopeo, the path ends at
/// the first `:` (paths containing `:` are not supported); the tag is everything after it and
/// may be a qualified name such as `ghcr.io/org/app:1.0` (how `graft mirror` names images in a
/// multi-image layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRef {
    /// The directory or archive file.
    pub path: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`), if given.
    pub tag: Option<String>,
}

/// A registry reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerRef {
    /// Registry host with optional port, normalised (`docker.io` → `registry-1.docker.io`).
    pub registry: String,
    /// Repository path (`library/alpine`).
    pub repository: String,
    /// Tag, if given.
    pub tag: Option<String>,
    /// Digest, if given.
    pub digest: Option<Digest>,
}

impl DockerRef {
    /// Parse a reference without the `docker://` prefix, normalising Docker Hub names.
    /// With neither tag nor digest, the tag defaults to `latest`.
    pub fn parse(input: &str) -> Result<DockerRef> {
        let bad = |reason: &str| Error::InvalidReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(bad("empty reference"));
        }
        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
            ),
            None => (input, None),
        };
        // The tag is after the last ':' if no '/' follows it (a ':' before a '/' is a port).
        let (name, tag) = match name_tag.rfind(':') {
            Some(i) if !name_tag[i + 1..].contains('/') => {
                (&name_tag[..i], Some(&name_tag[i + 1..]))
            }
            _ => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| bad(&r))?;
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        if registry.is_empty() {
            return Err(bad("empty registry host"));
        }
        let registry = match registry.as_str() {
            "docker.io" | "index.docker.io" => DOCKER_HUB_HOST.to_string(),
            _ => registry,
        };
        let repository = if registry == DOCKER_HUB_HOST && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(|r| bad(&r))?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(DockerRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The tag or digest to ask the registry for (digest wins).
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> DockerRef {
        DockerRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }

    /// The same repository at a digest, no tag.
    pub fn with_digest(&self, digest: Digest) -> DockerRef {
        DockerRef {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Check a tag against the distribution grammar `[\w][\w.-]{0,127}`.
pub fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-';
    if tag.is_empty() {
        return Err("empty tag".into());
    }
    if tag.len() > 128 {
        return Err(format!(
            "tag is {} characters long, the maximum is 128",
            tag.len()
        ));
    }
    let first = tag.chars().next().unwrap_or('.');
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if let Some(c) = tag.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "tag {tag:?} contains {c:?}; allowed are letters, digits, '_', '.', '-'"
        ));
    }
    Ok(())
}

/// Check a repository path: lowercase components of `[a-z0-9]+` joined by `.`, `_`, `__` or dashes.
pub fn validate_repository(repo: &str) -> std::result::Result<(), String> {
    if repo.is_empty() {
        return Err("empty repository name".into());
    }
    if repo.len() > 255 {
        return Err("repository name longer than 255 characters".into());
    }
    for comp in repo.split('/') {
        if comp.is_empty() {
            return Err(format!("repository {repo:?} has an empty path component"));
        }
        if comp.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!("repository {repo:?} must be lowercase"));
        }
        let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !comp.starts_with(alnum) || !comp.ends_with(alnum) {
            return Err(format!(
                "repository component {comp:?} must start and end with a lowercase letter or digit"
            ));
        }
        if let Some(c) = comp
            .chars()
            .find(|c| !(alnum(*c) || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!("repository component {comp:?} contains {c:?}"));
        }
        if comp.contains("..") || comp.contains("___") || comp.contains("._") || comp.contains("_.")
        {
            return Err(format!(
                "repository component {comp:?} has a bad separator sequence"
            ));
        }
    }
    Ok(())
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(input: &str) -> Result<ImageRef> {
        let bad = |reason: &str| Error::InvalidReference {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if let Some(rest) = input.strip_prefix("docker://") {
            return DockerRef::parse(rest).map(ImageRef::Docker);
        }
        let layout = |rest: &str| -> Result<LayoutRef> {
            let (path, tag) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t)),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(bad("missing path"));
            }
            if let Some(t) = tag {
                if t.is_empty() {
                    return Err(bad("empty tag after ':'"));
                }
            }
            Ok(LayoutRef {
                path: PathBuf::from(path),
                tag: tag.map(str::to_string),
            })
        };
        if let Some(rest) = input.strip_prefix("oci:") {
            return layout(rest).map(ImageRef::Layout);
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            return layout(rest).map(ImageRef::Archive);
        }
        match input.split_once(':') {
            Some((t, _)) if OTHER_TRANSPORTS.contains(&t) => Err(bad(&format!(
                "unsupported transport {t:?}; use docker://, oci: or oci-archive:"
            ))),
            _ => Err(bad(
                "missing transport; use docker://HOST/REPO[:TAG], oci:DIR[:TAG] or oci-archive:FILE[:TAG]",
            )),
        }
    }
}

/// containers/image transports graft does not read or write: named in errors, never taken for
/// a registry host.
const OTHER_TRANSPORTS: &[&str] = &[
    "dir",
    "docker-archive",
    "docker-daemon",
    "containers-storage",
    "ostree",
    "sif",
    "tarball",
];

impl ImageRef {
    /// A reference with a transport (`docker://`, `oci:`, `oci-archive:`), or a plain registry
    /// reference as crane and the builders take it (`registry/repo:tag`, `debian:12`).
    pub fn parse_or_registry(input: &str) -> Result<ImageRef> {
        let transport = input.split_once(':').map(|(t, _)| t);
        match transport {
            Some("docker" | "oci" | "oci-archive") => input.parse(),
            Some(t) if OTHER_TRANSPORTS.contains(&t) => input.parse(),
            _ => DockerRef::parse(input).map(ImageRef::Docker),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageRef::Docker(d) => write!(f, "docker://{d}"),
            ImageRef::Layout(l) | ImageRef::Archive(l) => {
                let t = if matches!(self, ImageRef::Layout(_)) {
                    "oci"
                } else {
                    "oci-archive"
                };
                write!(f, "{t}:{}", l.path.display())?;
                if let Some(tag) = &l.tag {
                    write!(f, ":{tag}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_references_are_registry_references() {
        let r = ImageRef::parse_or_registry("127.0.0.1:5000/t/bb:1").unwrap();
        assert!(matches!(r, ImageRef::Docker(_)), "{r}");
        assert!(matches!(
            ImageRef::parse_or_registry("debian:12").unwrap(),
            ImageRef::Docker(_)
        ));
        assert!(matches!(
            ImageRef::parse_or_registry("oci:dir:1").unwrap(),
            ImageRef::Layout(_)
        ));
        assert!(ImageRef::parse_or_registry("containers-storage:x").is_err());
    }

    fn d(s: &str) -> DockerRef {
        match s.parse::<ImageRef>().unwrap() {
            ImageRef::Docker(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_normalisation() {
        let r = d("docker://alpine");
        assert_eq!(r.registry, DOCKER_HUB_HOST);
        assert_eq!(r.repository, "library/alpine");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(d("docker://docker.io/user/img:1").repository, "user/img");
    }

    #[test]
    fn host_port_tag_digest() {
        let dg = Digest::sha256(b"x");
        let r = d(&format!("docker://127.0.0.1:5000/a/b:v1@{dg}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.reference(), dg.to_string());
        let r = d("docker://localhost:5000/a");
        assert_eq!(
            (r.registry.as_str(), r.tag.as_deref()),
            ("localhost:5000", Some("latest"))
        );
    }

    #[test]
    fn layouts() {
        let r: ImageRef = "oci:/tmp/x:1.0".parse().unwrap();
        assert_eq!(
            r,
            ImageRef::Layout(LayoutRef {
                path: "/tmp/x".into(),
                tag: Some("1.0".into())
            })
        );
        let r: ImageRef = "oci-archive:out.tar".parse().unwrap();
        assert!(matches!(r, ImageRef::Archive(LayoutRef { tag: None, .. })));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| s.parse::<ImageRef>().unwrap_err().to_string();
        assert!(e("alpine").contains("missing transport"));
        assert!(e("dir:/tmp/x").contains("unsupported transport"));
        assert!(e("docker://Alpine").contains("lowercase"));
        assert!(e("docker://alpine:-x").contains("must start"));
        assert!(e("docker://alpine@sha256:12").contains("64 hex"));
        assert!(e("oci:").contains("missing path"));
    }
}
