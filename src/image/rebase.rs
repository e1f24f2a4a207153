//! Rebasing one image manifest without a rebuild: the old base's layers, which must be a prefix
//! of the image's (by diff_id and by layer descriptor), are swapped for the new base's. Only
//! `rootfs.diff_ids` and `history` of the image's config change (edited as ordered JSON, so
//! every other field and its key order survive), and only `config`, `layers` and the base
//! annotations of its manifest. Nothing reads a clock: the same inputs give the same digests.
//!
//! [`RebasedSource`] then serves the result to the copy engine: new documents from memory, the
//! new base's layers from the new base's store, the image's own layers from the image's store,
//! so no layer is downloaded where a mount or a skip will do.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};

use super::manifest::layer_media_type_for;
use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, Platform, RawManifest};
use crate::store::{BlobStream, MountOrigin, Source};

/// One image manifest and the exact bytes of its config.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// The manifest.
    pub manifest: &'a RawManifest,
    /// Its config's bytes.
    pub config: &'a [u8],
}

/// One rebased manifest.
#[derive(Debug, Clone)]
pub struct Rebased {
    /// The new manifest.
    pub manifest: RawManifest,
    /// The new config's bytes (described by the manifest's config descriptor).
    pub config: Bytes,
    /// The new config's descriptor.
    pub config_desc: Descriptor,
    /// The old base's layers that were removed.
    pub old_layers: usize,
    /// The new base's layers put in front.
    pub new_layers: usize,
    /// The image's own layers, kept.
    pub own_layers: usize,
}

fn config_value(bytes: &[u8], what: &str) -> Result<Value> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::Json {
        what: format!("config of {what}"),
        source: e,
    })?;
    if !v.is_object() {
        return Err(Error::Invalid {
            what: format!("config of {what}"),
            reason: "not a JSON object".into(),
        });
    }
    Ok(v)
}

/// `rootfs.diff_ids` of a config, each parsed.
fn diff_ids(config: &Value, what: &str) -> Result<Vec<Digest>> {
    let bad = |reason: String| Error::Invalid {
        what: format!("config of {what}"),
        reason,
    };
    let Some(list) = config.pointer("/rootfs/diff_ids") else {
        return Ok(Vec::new());
    };
    if list.is_null() {
        return Ok(Vec::new());
    }
    let list = list
        .as_array()
        .ok_or_else(|| bad("rootfs.diff_ids is not an array".into()))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str()
                .ok_or_else(|| bad(format!("rootfs.diff_ids[{i}] is not a string")))?
                .parse()
        })
        .collect()
}

/// `history` of a config (absent or null: `None`).
fn history(config: &Value, what: &str) -> Result<Option<Vec<Value>>> {
    match config.get("history") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a.clone())),
        Some(_) => Err(Error::Invalid {
            what: format!("config of {what}"),
            reason: "history is not an array".into(),
        }),
    }
}

/// Whether a history entry stands for a layer (`empty_layer` absent or false).
fn makes_layer(entry: &Value) -> bool {
    !entry
        .get("empty_layer")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn count_layers(entries: &[Value]) -> usize {
    entries.iter().filter(|e| makes_layer(e)).count()
}

/// How many of the image's history entries belong to the old base. When the old base has a
/// history, its entries are the image's first ones (Dockerfile builds and every append copy
/// them): their count, checked against the layers they must stand for. Without one, the
/// entries up to the old base's last layer (empty-layer entries after it are the image's own:
/// nothing tells them apart, and an `ENV` after `FROM` is the common case).
fn old_history_len(
    image: &[Value],
    old: Option<&[Value]>,
    old_layers: usize,
    what: &str,
) -> Result<usize> {
    let bad = |reason: String| Error::Input {
        what: what.to_string(),
        reason,
    };
    if let Some(old) = old.filter(|o| !o.is_empty()) {
        if old.len() > image.len() || count_layers(&image[..old.len()]) != old_layers {
            return Err(bad(format!(
                "the image's history does not start with the old base's: the old base has {} \
                 history entries for {old_layers} layers, the image's first {} entries stand \
                 for {} layers",
                old.len(),
                old.len().min(image.len()),
                count_layers(&image[..old.len().min(image.len())])
            )));
        }
        return Ok(old.len());
    }
    if old_layers == 0 {
        return Ok(0);
    }
    let mut seen = 0;
    for (i, e) in image.iter().enumerate() {
        if makes_layer(e) {
            seen += 1;
            if seen == old_layers {
                return Ok(i + 1);
            }
        }
    }
    Err(bad(format!(
        "the image's history stands for {seen} layers, fewer than the old base's {old_layers}"
    )))
}

/// The image's config with the old base swapped for the new one: `rootfs.diff_ids` = the new
/// base's + the image's own; `history` = the new base's + the image's own entries (those after
/// the old base's). Everything else, `created` included, is kept as it was, in its order.
/// `own` is how many of the image's diff_ids are its own (checked by the caller).
pub fn rebase_config(
    image: &[u8],
    old: &[u8],
    new: &[u8],
    own: usize,
    what: &str,
) -> Result<Vec<u8>> {
    let mut doc = config_value(image, what)?;
    let old_doc = config_value(old, &format!("the old base of {what}"))?;
    let new_doc = config_value(new, &format!("the new base of {what}"))?;
    let image_ids = diff_ids(&doc, what)?;
    let old_ids = diff_ids(&old_doc, what)?;
    let new_ids = diff_ids(&new_doc, what)?;
    if own + old_ids.len() != image_ids.len() {
        return Err(Error::internal(
            format!("rebasing {what}"),
            "the layer counts of the image and its old base disagree",
        ));
    }
    let mut ids: Vec<Value> = new_ids
        .iter()
        .map(|d| Value::String(d.to_string()))
        .collect();
    ids.extend(
        image_ids[old_ids.len()..]
            .iter()
            .map(|d| Value::String(d.to_string())),
    );

    let image_hist = history(&doc, what)?;
    let new_history = match image_hist {
        // No history in the image: none is invented.
        None => None,
        Some(image_hist) => {
            if count_layers(&image_hist) != image_ids.len() {
                return Err(Error::Input {
                    what: what.to_string(),
                    reason: format!(
                        "its history stands for {} layers but it has {}: which entries are the \
                         base's cannot be told",
                        count_layers(&image_hist),
                        image_ids.len()
                    ),
                });
            }
            let old_hist = history(&old_doc, what)?;
            let cut = old_history_len(&image_hist, old_hist.as_deref(), old_ids.len(), what)?;
            let new_hist = history(&new_doc, what)?.unwrap_or_default();
            if count_layers(&new_hist) != new_ids.len() {
                return Err(Error::Input {
                    what: format!("the new base of {what}"),
                    reason: format!(
                        "its history stands for {} layers but it has {}; the rebased history \
                         would not match its layers",
                        count_layers(&new_hist),
                        new_ids.len()
                    ),
                });
            }
            let mut h = new_hist;
            h.extend(image_hist[cut..].iter().cloned());
            Some(h)
        }
    };

    let root = doc.as_object_mut().ok_or_else(|| Error::Invalid {
        what: format!("config of {what}"),
        reason: "not a JSON object".into(),
    })?;
    match root.get_mut("rootfs").and_then(Value::as_object_mut) {
        Some(rootfs) => {
            rootfs.insert("diff_ids".into(), Value::Array(ids));
        }
        None => {
            let mut rootfs = Map::new();
            rootfs.insert("type".into(), Value::String("layers".into()));
            rootfs.insert("diff_ids".into(), Value::Array(ids));
            root.insert("rootfs".into(), Value::Object(rootfs));
        }
    }
    if let Some(h) = new_history {
        root.insert("history".into(), Value::Array(h));
    }
    serde_json::to_vec(&doc).map_err(|e| Error::Json {
        what: format!("rebased config of {what}"),
        source: e,
    })
}

/// Check that `old` is a prefix of `image` by layer descriptor and diff_id; the error names
/// `what` (the platform) and the first position (1-based) that differs.
pub fn check_prefix(image: Parts<'_>, old: Parts<'_>, what: &str) -> Result<()> {
    let image_doc = config_value(image.config, what)?;
    let old_doc = config_value(old.config, &format!("the old base of {what}"))?;
    let image_ids = diff_ids(&image_doc, what)?;
    let old_ids = diff_ids(&old_doc, what)?;
    let image_layers = &image.manifest.view().layers;
    let old_layers = &old.manifest.view().layers;
    for (who, layers, ids) in [
        ("the image", image_layers, &image_ids),
        ("the old base", old_layers, &old_ids),
    ] {
        if layers.len() != ids.len() {
            return Err(Error::Invalid {
                what: format!("{who} ({what})"),
                reason: format!(
                    "its manifest lists {} layers but its config {} diff_ids",
                    layers.len(),
                    ids.len()
                ),
            });
        }
    }
    let refuse = |reason: String| Error::Input {
        what: format!("rebase of {what}"),
        reason: format!("the old base is not a prefix of the image: {reason}"),
    };
    if old_ids.len() > image_ids.len() {
        return Err(refuse(format!(
            "the old base has {} layers, the image only {}",
            old_ids.len(),
            image_ids.len()
        )));
    }
    for i in 0..old_ids.len() {
        if image_ids[i] != old_ids[i] {
            return Err(refuse(format!(
                "layer {} of {}: the image's diff_id is {}, the old base's {}",
                i + 1,
                image_ids.len(),
                image_ids[i],
                old_ids[i]
            )));
        }
        if image_layers[i].digest != old_layers[i].digest
            || image_layers[i].size != old_layers[i].size
        {
            return Err(refuse(format!(
                "layer {} of {}: the image's blob is {} ({} bytes), the old base's {} ({} bytes)",
                i + 1,
                image_ids.len(),
                image_layers[i].digest,
                image_layers[i].size,
                old_layers[i].digest,
                old_layers[i].size
            )));
        }
    }
    Ok(())
}

/// Rebase one image manifest from `old` onto `new` (after [`check_prefix`]): the manifest keeps
/// every field but `config`, `layers` and `annotations`, which get the new base's layers in
/// front of the image's own and `annotations` set over the image's own.
pub fn rebase_manifest(
    image: Parts<'_>,
    old: Parts<'_>,
    new: Parts<'_>,
    annotations: &BTreeMap<String, String>,
    what: &str,
) -> Result<Rebased> {
    check_prefix(image, old, what)?;
    let image_layers = &image.manifest.view().layers;
    let old_n = old.manifest.view().layers.len();
    let own = &image_layers[old_n..];
    let new_layers = &new.manifest.view().layers;
    let config = Bytes::from(rebase_config(
        image.config,
        old.config,
        new.config,
        own.len(),
        what,
    )?);
    let new_ids = diff_ids(&config_value(new.config, what)?, what)?;
    if new_ids.len() != new_layers.len() {
        return Err(Error::Invalid {
            what: format!("the new base ({what})"),
            reason: format!(
                "its manifest lists {} layers but its config {} diff_ids",
                new_layers.len(),
                new_ids.len()
            ),
        });
    }
    let old_cfg = image
        .manifest
        .view()
        .config
        .clone()
        .ok_or_else(|| Error::Invalid {
            what: format!("manifest {}", image.manifest.digest()),
            reason: "no config".into(),
        })?;
    let config_desc = Descriptor::new(
        old_cfg.media_type.clone(),
        Digest::sha256(&config),
        config.len() as u64,
    );
    let mut layers = Vec::with_capacity(new_layers.len() + own.len());
    for l in new_layers {
        let mut d = l.clone();
        // Docker layer types inside a Docker manifest, never mixed (what append does too).
        d.media_type = layer_media_type_for(image.manifest.media_type(), &l.media_type)?;
        layers.push(d);
    }
    layers.extend(own.iter().cloned());
    let manifest = replace_layers(image.manifest, &config_desc, &layers, annotations)?;
    Ok(Rebased {
        manifest,
        config,
        config_desc,
        old_layers: old_n,
        new_layers: new_layers.len(),
        own_layers: own.len(),
    })
}

/// `base` with `config` and `layers` replaced and `annotations` set over its own.
fn replace_layers(
    base: &RawManifest,
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Result<RawManifest> {
    let json = |e| Error::Json {
        what: format!("manifest {}", base.digest()),
        source: e,
    };
    let mut doc: Value = serde_json::from_slice(base.bytes()).map_err(json)?;
    let obj = doc.as_object_mut().ok_or_else(|| Error::Invalid {
        what: format!("manifest {}", base.digest()),
        reason: "not a JSON object".into(),
    })?;
    obj.insert("config".into(), serde_json::to_value(config).map_err(json)?);
    obj.insert("layers".into(), serde_json::to_value(layers).map_err(json)?);
    if !annotations.is_empty() {
        let slot = obj.entry("annotations").or_insert(Value::Null);
        if slot.is_null() {
            *slot = Value::Object(Map::new());
        }
        let map = slot.as_object_mut().ok_or_else(|| Error::Invalid {
            what: format!("manifest {}", base.digest()),
            reason: "annotations is not an object".into(),
        })?;
        for (k, v) in annotations {
            map.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let bytes = serde_json::to_vec(&doc).map_err(json)?;
    RawManifest::from_bytes(Bytes::from(bytes), Some(base.media_type()))
}

/// The platform a config names (`os`, `architecture`, `variant`), if it names one.
pub fn config_platform(config: &[u8]) -> Option<Platform> {
    let v: Value = serde_json::from_slice(config).ok()?;
    Some(Platform {
        os: v.get("os")?.as_str()?.to_string(),
        architecture: v.get("architecture")?.as_str()?.to_string(),
        variant: v.get("variant").and_then(Value::as_str).map(str::to_string),
        ..Platform::default()
    })
}

/// The rebased image for the copy engine: new documents and configs from memory, the new
/// base's blobs from its store (mounted from there when the destination is the same registry),
/// the rest from the image's store.
pub struct RebasedSource {
    image: Arc<dyn Source>,
    new_base: Arc<dyn Source>,
    root: RawManifest,
    manifests: HashMap<Digest, RawManifest>,
    configs: HashMap<Digest, Bytes>,
    new_base_blobs: HashSet<Digest>,
}

impl RebasedSource {
    /// A source serving `root`, `manifests` and `configs`, with blobs in `new_base_blobs` read
    /// from `new_base` and all others from `image`.
    pub fn new(
        image: Arc<dyn Source>,
        new_base: Arc<dyn Source>,
        root: RawManifest,
        manifests: HashMap<Digest, RawManifest>,
        configs: HashMap<Digest, Bytes>,
        new_base_blobs: HashSet<Digest>,
    ) -> RebasedSource {
        RebasedSource {
            image,
            new_base,
            root,
            manifests,
            configs,
            new_base_blobs,
        }
    }

    fn store_of(&self, d: &Digest) -> &dyn Source {
        if self.new_base_blobs.contains(d) {
            self.new_base.as_ref()
        } else {
            self.image.as_ref()
        }
    }
}

#[async_trait]
impl Source for RebasedSource {
    fn name(&self) -> String {
        format!(
            "{} rebased onto {}",
            self.image.name(),
            self.new_base.name()
        )
    }

    async fn resolve(&self) -> Result<RawManifest> {
        Ok(self.root.clone())
    }

    async fn manifest(&self, desc: &Descriptor) -> Result<RawManifest> {
        match self.manifests.get(&desc.digest) {
            Some(m) => Ok(m.clone()),
            None => self.image.manifest(desc).await,
        }
    }

    async fn blob(&self, desc: &Descriptor) -> Result<BlobStream> {
        if let Some(b) = self.configs.get(&desc.digest) {
            // A config graft made and digested a moment ago; its size is checked.
            if b.len() as u64 != desc.size {
                return Err(Error::SizeMismatch {
                    what: format!("blob {}", desc.digest),
                    expected: desc.size,
                    found: b.len() as u64,
                });
            }
            let b = b.clone();
            return Ok(Box::pin(futures::stream::once(async move { Ok(b) })));
        }
        self.store_of(&desc.digest).blob(desc).await
    }

    fn mount_origin(&self, desc: &Descriptor) -> Option<MountOrigin> {
        if self.configs.contains_key(&desc.digest) {
            return None;
        }
        self.store_of(&desc.digest).mount_origin(desc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> String {
        Digest::sha256(&[n]).to_string()
    }

    fn cfg(ids: &[u8], history: &str) -> Vec<u8> {
        let ids: Vec<String> = ids.iter().map(|n| format!("\"{}\"", d(*n))).collect();
        format!(
            r#"{{"created":"2020-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{{"Env":["A=1"],"Entrypoint":["/app"]}},"rootfs":{{"type":"layers","diff_ids":[{}]}}{history},"zz":1}}"#,
            ids.join(",")
        )
        .into_bytes()
    }

    const OLD_H: &str = r#","history":[{"created_by":"old 1"},{"created_by":"ENV X","empty_layer":true},{"created_by":"old 2"},{"created_by":"LABEL","empty_layer":true}]"#;
    const NEW_H: &str =
        r#","history":[{"created_by":"new 1"},{"created_by":"new ENV","empty_layer":true}]"#;
    const IMG_H: &str = r#","history":[{"created_by":"old 1"},{"created_by":"ENV X","empty_layer":true},{"created_by":"old 2"},{"created_by":"LABEL","empty_layer":true},{"created_by":"ENV Y","empty_layer":true},{"created_by":"own 1"}]"#;

    #[test]
    fn swaps_diff_ids_and_history_and_keeps_the_rest() {
        let image = cfg(&[1, 2, 9], IMG_H);
        let out = rebase_config(&image, &cfg(&[1, 2], OLD_H), &cfg(&[5], NEW_H), 1, "x").unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = format!(
            r#"{{"created":"2020-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{{"Env":["A=1"],"Entrypoint":["/app"]}},"rootfs":{{"type":"layers","diff_ids":["{}","{}"]}},"history":[{{"created_by":"new 1"}},{{"created_by":"new ENV","empty_layer":true}},{{"created_by":"ENV Y","empty_layer":true}},{{"created_by":"own 1"}}],"zz":1}}"#,
            d(5),
            d(9)
        );
        assert_eq!(text, want);
    }

    #[test]
    fn go_escapes_survive_as_values_not_as_bytes() {
        // Go's encoder writes `&`, `<` and `>` as \u0026, \u003c, \u003e (docker and
        // buildah configs do); serde_json writes them as they are. A round trip onto the new
        // base and back gives the same JSON, not the same bytes (decisions §27).
        let go = |ids: &[u8], h: &str| {
            String::from_utf8(cfg(ids, h))
                .unwrap()
                .replace(r#""A=1""#, r#""A=x\u0026y\u003cz\u003e""#)
                .into_bytes()
        };
        let img_h = IMG_H.replace("own 1", r"RUN a \u0026\u0026 b");
        let image = go(&[1, 2, 9], &img_h);
        let old = cfg(&[1, 2], OLD_H);
        let new = cfg(&[5], NEW_H);
        let there = rebase_config(&image, &old, &new, 1, "x").unwrap();
        let back = rebase_config(&there, &new, &old, 1, "x").unwrap();
        let value = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap();
        assert_eq!(value(&back), value(&image));
        assert_ne!(back, image);
        let text = String::from_utf8(back).unwrap();
        assert!(
            text.contains(r#""A=x&y<z>""#) && text.contains("RUN a && b"),
            "{text}"
        );
        // A config without such escapes comes back byte for byte.
        let plain = cfg(&[1, 2, 9], IMG_H);
        let there = rebase_config(&plain, &old, &new, 1, "x").unwrap();
        assert_eq!(rebase_config(&there, &new, &old, 1, "x").unwrap(), plain);
    }

    #[test]
    fn an_old_base_without_history_cuts_after_its_last_layer() {
        let image = cfg(&[1, 2, 9], IMG_H);
        let out = rebase_config(&image, &cfg(&[1, 2], ""), &cfg(&[5], NEW_H), 1, "x").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let by: Vec<&str> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["created_by"].as_str().unwrap())
            .collect();
        // The LABEL after the old base's last layer cannot be told from the image's own.
        assert_eq!(by, ["new 1", "new ENV", "LABEL", "ENV Y", "own 1"]);
    }

    #[test]
    fn an_image_without_history_gets_none() {
        let out =
            rebase_config(&cfg(&[1, 9], ""), &cfg(&[1], ""), &cfg(&[5, 6], ""), 1, "x").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("history").is_none());
        assert_eq!(v["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn inconsistent_histories_are_refused() {
        let short = r#","history":[{"created_by":"only one"}]"#;
        let e = rebase_config(
            &cfg(&[1, 2, 9], short),
            &cfg(&[1, 2], OLD_H),
            &cfg(&[5], NEW_H),
            1,
            "linux/amd64",
        )
        .unwrap_err();
        assert!(
            e.is_usage()
                && e.to_string()
                    .contains("history stands for 1 layers but it has 3"),
            "{e}"
        );
        let e = rebase_config(
            &cfg(&[1, 2, 9], IMG_H),
            &cfg(&[1, 2], OLD_H),
            &cfg(&[5, 6], NEW_H),
            1,
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("new base"), "{e}");
    }

    fn manifest(layers: &[u8], config: &[u8]) -> RawManifest {
        let ls: Vec<String> = layers
            .iter()
            .map(|n| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{n}}}"#,
                    Digest::sha256(&[n + 100])
                )
            })
            .collect();
        let doc = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}],"annotations":{{"keep":"me"}}}}"#,
            Digest::sha256(config),
            config.len(),
            ls.join(",")
        );
        RawManifest::from_bytes(Bytes::from(doc), None).unwrap()
    }

    #[test]
    fn rebases_a_manifest_and_names_the_first_mismatch() {
        let (ic, oc, nc) = (
            cfg(&[1, 2, 9], IMG_H),
            cfg(&[1, 2], OLD_H),
            cfg(&[5], NEW_H),
        );
        let (im, om, nm) = (
            manifest(&[1, 2, 9], &ic),
            manifest(&[1, 2], &oc),
            manifest(&[5], &nc),
        );
        fn p<'a>(m: &'a RawManifest, c: &'a [u8]) -> Parts<'a> {
            Parts {
                manifest: m,
                config: c,
            }
        }
        let ann = BTreeMap::from([(
            "org.opencontainers.image.base.name".to_string(),
            "n".to_string(),
        )]);
        let r =
            rebase_manifest(p(&im, &ic), p(&om, &oc), p(&nm, &nc), &ann, "linux/amd64").unwrap();
        let layers: Vec<&Digest> = r.manifest.view().layers.iter().map(|l| &l.digest).collect();
        assert_eq!(
            layers,
            [&nm.view().layers[0].digest, &im.view().layers[2].digest]
        );
        assert_eq!(
            r.manifest.view().config.as_ref().unwrap().digest,
            Digest::sha256(&r.config)
        );
        let ann = r.manifest.view().annotations.clone().unwrap();
        assert_eq!(ann["keep"], "me");
        assert_eq!(ann["org.opencontainers.image.base.name"], "n");
        assert_eq!((r.old_layers, r.new_layers, r.own_layers), (2, 1, 1));

        // Not a prefix: diff_id at position 2.
        let bad = cfg(&[1, 3], OLD_H);
        let bm = manifest(&[1, 2], &bad);
        let e = rebase_manifest(p(&im, &ic), p(&bm, &bad), p(&nm, &nc), &ann, "linux/arm64")
            .unwrap_err();
        assert!(e.is_usage(), "{e:?}");
        let s = e.to_string();
        assert!(
            s.contains("linux/arm64") && s.contains("layer 2 of 3"),
            "{s}"
        );
        // Same diff_ids, other blob.
        let bm = manifest(&[1, 4], &oc);
        let e = rebase_manifest(p(&im, &ic), p(&bm, &oc), p(&nm, &nc), &ann, "linux/arm64")
            .unwrap_err();
        assert!(
            e.to_string().contains("layer 2 of 3: the image's blob"),
            "{e}"
        );
        // Longer than the image.
        let lc = cfg(&[1, 2, 9, 7], OLD_H);
        let lm = manifest(&[1, 2, 9, 7], &lc);
        let e = rebase_manifest(p(&im, &ic), p(&lm, &lc), p(&nm, &nc), &ann, "x").unwrap_err();
        assert!(e.to_string().contains("4 layers, the image only 3"), "{e}");
    }

    #[test]
    fn deterministic() {
        let (ic, oc, nc) = (
            cfg(&[1, 2, 9], IMG_H),
            cfg(&[1, 2], OLD_H),
            cfg(&[5], NEW_H),
        );
        assert_eq!(
            rebase_config(&ic, &oc, &nc, 1, "x").unwrap(),
            rebase_config(&ic, &oc, &nc, 1, "x").unwrap()
        );
    }
}
