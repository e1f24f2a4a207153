//! Breadcrumb labels, SciServer style: which science and compat versions make up an image.
//!
//! With a label prefix `P` (the library's `label_prefix`):
//! - `P.compat.version` = `<compat name>:<version>-<build>-<commit>`, `P.compat.buildtime`
//! - `P.science.<target>.version`, `P.science.<target>.buildtime`
//!
//! Breadcrumbs already present in a science image's config are kept (config edits only add
//! labels), so an image refreshed many times still tells its whole make-up.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::timestamp::Timestamp;

/// The compat breadcrumbs for one refresh.
pub fn compat_labels(
    prefix: &str,
    compat: &str,
    version: &str,
    build: &str,
    commit: &str,
    buildtime: Timestamp,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            format!("{prefix}.compat.version"),
            format!("{compat}:{version}-{build}-{commit}"),
        ),
        (format!("{prefix}.compat.buildtime"), buildtime.rfc3339()),
    ])
}

/// The science breadcrumbs for `target`, unless `existing` labels already carry them.
pub fn science_labels(
    prefix: &str,
    target: &str,
    version: &str,
    buildtime: Option<&str>,
    existing: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let v = format!("{prefix}.science.{target}.version");
    let b = format!("{prefix}.science.{target}.buildtime");
    if !existing.contains_key(&v) {
        out.insert(v, version.to_string());
    }
    if let (false, Some(t)) = (existing.contains_key(&b), buildtime) {
        out.insert(b, t.to_string());
    }
    out
}

/// One component found in an image's labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Crumb {
    /// The label prefix it was found under.
    pub prefix: String,
    /// `compat` or `science.<target>`.
    pub component: String,
    /// Its version, if labelled.
    pub version: Option<String>,
    /// Its build time, if labelled.
    pub buildtime: Option<String>,
}

/// Every breadcrumb in `labels`, whatever its prefix, in label order.
pub fn read(labels: &BTreeMap<String, String>) -> Vec<Crumb> {
    let mut found: BTreeMap<(String, String), Crumb> = BTreeMap::new();
    for (key, value) in labels {
        let (stem, field) = match key.rsplit_once('.') {
            Some((s, f)) if f == "version" || f == "buildtime" => (s, f),
            _ => continue,
        };
        let split = if let Some(p) = stem.strip_suffix(".compat") {
            Some((p.to_string(), "compat".to_string()))
        } else {
            stem.find(".science.")
                .map(|i| (stem[..i].to_string(), stem[i + 1..].to_string()))
        };
        let Some((prefix, component)) = split else {
            continue;
        };
        if prefix.is_empty() || component == "science." {
            continue;
        }
        let c = found
            .entry((prefix.clone(), component.clone()))
            .or_insert(Crumb {
                prefix,
                component,
                version: None,
                buildtime: None,
            });
        if field == "version" {
            c.version = Some(value.clone());
        } else {
            c.buildtime = Some(value.clone());
        }
    }
    found.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let mut labels = compat_labels(
            "org.sciserver",
            "jupyter-compat",
            "2.4",
            "32",
            "dk8912n",
            Timestamp(0),
        );
        let existing = BTreeMap::from([(
            "org.sciserver.science.base.version".to_string(),
            "1.0".to_string(),
        )]);
        labels.extend(existing.clone());
        labels.extend(science_labels(
            "org.sciserver",
            "base",
            "9.9",
            Some("t"),
            &existing,
        ));
        labels.extend(science_labels(
            "org.sciserver",
            "essentials",
            "2.4",
            Some("2024-01-01T00:00:00Z"),
            &existing,
        ));
        labels.insert("org.opencontainers.image.version".into(), "2.4".into());
        let crumbs = read(&labels);
        assert_eq!(crumbs.len(), 3, "{crumbs:?}");
        assert_eq!(crumbs[0].component, "compat");
        assert_eq!(
            crumbs[0].version.as_deref(),
            Some("jupyter-compat:2.4-32-dk8912n")
        );
        assert_eq!(crumbs[1].component, "science.base");
        assert_eq!(
            crumbs[1].version.as_deref(),
            Some("1.0"),
            "existing breadcrumbs are kept"
        );
        assert_eq!(crumbs[1].buildtime.as_deref(), Some("t"));
        assert_eq!(crumbs[2].buildtime.as_deref(), Some("2024-01-01T00:00:00Z"));
    }
}
