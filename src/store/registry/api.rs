//! Distribution API operations on one repository: manifests, blobs, uploads, mounts, tags.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
};
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::Scope;
use super::client::{
    redact_url, Body, Document, Registry, MANIFEST_LIMIT, MAX_TAG_PAGES, TAGS_PAGE_LIMIT,
};
use crate::error::{Error, Result};
use crate::oci::{media_types, Descriptor, Digest, RawManifest};
use crate::store::{verify_stream, BlobStream};

/// The outcome of a cross-repository mount attempt.
#[derive(Debug)]
pub enum Mount {
    /// The registry linked the blob (201).
    Mounted,
    /// The registry did not mount but opened an upload session at this URL (202).
    Session(Url),
    /// The registry refused the mount (e.g. 401/403: no pull access to the source
    /// repository with these credentials); the blob must be uploaded.
    Refused,
}

fn accept_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        ACCEPT,
        HeaderValue::from_str(&media_types::MANIFEST_ACCEPT.join(", ")).expect("static header"),
    );
    h
}

/// `host/repo:tag` or `host/repo@digest`.
fn display_ref(host: &str, repo: &str, reference: &str) -> String {
    let sep = if reference.contains(':') { '@' } else { ':' };
    format!("{host}/{repo}{sep}{reference}")
}

fn header_digest(resp: &reqwest::Response) -> Option<Digest> {
    digest_in(resp.headers())
}

fn digest_in(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

impl Registry {
    /// Fetch a manifest by tag or digest, keeping its exact bytes. Bytes fetched by digest are
    /// verified; bytes fetched by tag are checked against `Docker-Content-Digest` when sent.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<RawManifest> {
        let url = self
            .url(&format!("v2/{repo}/manifests/{reference}"))
            .await?;
        let what = format!("manifest {}", display_ref(self.host(), repo, reference));
        let (headers, bytes) = match self
            .get_document(
                &url,
                &[Scope::pull(repo)],
                accept_headers(),
                MANIFEST_LIMIT,
                &what,
            )
            .await?
        {
            Document::Body { headers, bytes } => (headers, bytes),
            Document::Status(resp) if resp.status() == StatusCode::NOT_FOUND => {
                let err = self.error(&Method::GET, &url, resp).await;
                return Err(Error::NotFound {
                    what,
                    detail: Some(err.to_string()),
                });
            }
            Document::Status(resp) => return Err(self.error(&Method::GET, &url, resp).await),
        };
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let claimed = digest_in(&headers);
        if let Ok(expected) = reference.parse::<Digest>() {
            expected.verify(&what, &bytes)?;
            RawManifest::with_digest(bytes, content_type.as_deref(), expected)
        } else {
            let m = RawManifest::from_bytes(bytes, content_type.as_deref())?;
            if let Some(c) = claimed.filter(|c| c.algorithm() == m.digest().algorithm()) {
                if c != *m.digest() {
                    return Err(Error::DigestMismatch {
                        what,
                        expected: c,
                        found: m.digest().clone(),
                    });
                }
            }
            Ok(m)
        }
    }

    /// HEAD a manifest; the digest it has, or `None` if it does not exist.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let url = self
            .url(&format!("v2/{repo}/manifests/{reference}"))
            .await?;
        let resp = self
            .send(
                Method::HEAD,
                url.clone(),
                &[Scope::pull(repo)],
                accept_headers(),
                Body::Empty,
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => match header_digest(&resp) {
                Some(d) => Ok(Some(d)),
                None => Ok(Some(
                    self.get_manifest(repo, reference).await?.digest().clone(),
                )),
            },
            _ => Err(self.error(&Method::HEAD, &url, resp).await),
        }
    }

    /// PUT a manifest's exact bytes under `reference` (a tag or its digest).
    pub async fn put_manifest(&self, repo: &str, reference: &str, m: &RawManifest) -> Result<()> {
        let url = self
            .url(&format!("v2/{repo}/manifests/{reference}"))
            .await?;
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(m.media_type()).map_err(|_| Error::Invalid {
                what: format!("manifest {}", m.digest()),
                reason: format!(
                    "media type {:?} is not a valid header value",
                    m.media_type()
                ),
            })?,
        );
        let resp = self
            .send(
                Method::PUT,
                url.clone(),
                &[Scope::push(repo)],
                h,
                Body::Bytes(m.bytes().clone()),
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.error(&Method::PUT, &url, resp).await);
        }
        if let Some(d) = header_digest(&resp).filter(|d| d.algorithm() == m.digest().algorithm()) {
            if d != *m.digest() {
                return Err(Error::DigestMismatch {
                    what: format!("manifest stored at {}/{repo}:{reference}", self.host()),
                    expected: m.digest().clone(),
                    found: d,
                });
            }
        }
        Ok(())
    }

    /// DELETE the manifest `digest` of `repo` (registries delete by digest only; every tag on
    /// it goes with it). A registry that does not allow deletes answers 405
    /// (`UNSUPPORTED`), reported as such.
    pub async fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<()> {
        let url = self.url(&format!("v2/{repo}/manifests/{digest}")).await?;
        let resp = self
            .send(
                Method::DELETE,
                url.clone(),
                &[Scope::delete(repo)],
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Err(Error::NotFound {
                what: format!("manifest {}/{repo}@{digest}", self.host()),
                detail: Some(self.error(&Method::DELETE, &url, resp).await.to_string()),
            }),
            s if s.is_success() => Ok(()),
            _ => Err(self.error(&Method::DELETE, &url, resp).await),
        }
    }

    /// Whether a blob exists in `repo` (HEAD).
    pub async fn has_blob(&self, repo: &str, desc: &Descriptor) -> Result<bool> {
        let url = self
            .url(&format!("v2/{repo}/blobs/{}", desc.digest))
            .await?;
        let resp = self
            .send(
                Method::HEAD,
                url.clone(),
                &[Scope::pull(repo)],
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(self.error(&Method::HEAD, &url, resp).await),
        }
    }

    /// Stream a blob, verified against its descriptor.
    pub async fn get_blob(&self, repo: &str, desc: &Descriptor) -> Result<BlobStream> {
        let url = self
            .url(&format!("v2/{repo}/blobs/{}", desc.digest))
            .await?;
        let resp = self
            .send(
                Method::GET,
                url.clone(),
                &[Scope::pull(repo)],
                HeaderMap::new(),
                Body::Empty,
            )
            .await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound {
                what: format!("blob {}/{repo}@{}", self.host(), desc.digest),
                detail: None,
            });
        }
        if !resp.status().is_success() {
            return Err(self.error(&Method::GET, &url, resp).await);
        }
        let what = format!("blob {}/{repo}@{}", self.host(), desc.digest);
        if let Some(len) = resp.content_length().filter(|l| *l > desc.size) {
            return Err(Error::SizeMismatch {
                what,
                expected: desc.size,
                found: len,
            });
        }
        let ctx = what.clone();
        let stream = resp.bytes_stream().map(move |r| {
            r.map_err(|e| Error::Http {
                context: format!("reading {ctx}"),
                source: e,
            })
        });
        Ok(verify_stream(Box::pin(stream), desc, what))
    }

    /// Ask the registry to mount `desc` from `from` into `repo`.
    pub async fn mount_blob(&self, repo: &str, desc: &Descriptor, from: &str) -> Result<Mount> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/")).await?;
        url.query_pairs_mut()
            .append_pair("mount", &desc.digest.to_string())
            .append_pair("from", from);
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let scopes = [Scope::push(repo), Scope::pull(from)];
        let resp = self
            .send(Method::POST, url.clone(), &scopes, h, Body::Empty)
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Session(self.location(&resp).await?)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::debug!(
                    "mount of {} from {from} refused ({}); uploading instead",
                    desc.digest,
                    resp.status()
                );
                Ok(Mount::Refused)
            }
            _ => Err(self.error(&Method::POST, &url, resp).await),
        }
    }

    async fn open_upload(&self, repo: &str) -> Result<(Url, u64)> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/")).await?;
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        let resp = self
            .send(
                Method::POST,
                url.clone(),
                &[Scope::push(repo)],
                h,
                Body::Empty,
            )
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.error(&Method::POST, &url, resp).await);
        }
        let min_chunk = resp
            .headers()
            .get("oci-chunk-min-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((self.location(&resp).await?, min_chunk))
    }

    /// Upload a blob: into `session` if a mount left one open, else a new one; one streamed
    /// PUT, or PATCH chunks (at least `OCI-Chunk-Min-Length`) then a closing PUT.
    pub async fn upload_blob(
        &self,
        repo: &str,
        desc: &Descriptor,
        data: BlobStream,
        session: Option<Url>,
    ) -> Result<()> {
        let (mut location, min_chunk) = match session {
            Some(s) => (s, 0),
            None => self.open_upload(repo).await?,
        };
        let scopes = [Scope::push(repo)];
        let mut data = data;
        if let Some(chunk) = self.config().chunk_size.map(|c| c.max(min_chunk).max(1)) {
            let mut offset = 0u64;
            let mut buf = BytesMut::new();
            let mut done = false;
            while !done {
                while (buf.len() as u64) < chunk {
                    match data.next().await {
                        Some(b) => buf.extend_from_slice(&b?),
                        None => {
                            done = true;
                            break;
                        }
                    }
                }
                let take = (buf.len() as u64).min(chunk) as usize;
                if take == 0 {
                    break;
                }
                let piece: Bytes = buf.split_to(take).freeze();
                done = done && buf.is_empty();
                let mut h = HeaderMap::new();
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                let range = format!("{}-{}", offset, offset + piece.len() as u64 - 1);
                h.insert(CONTENT_RANGE, HeaderValue::from_str(&range).expect("ascii"));
                h.insert(CONTENT_LENGTH, HeaderValue::from(piece.len() as u64));
                let len = piece.len() as u64;
                let resp = self
                    .send_stream(
                        Method::PATCH,
                        location.clone(),
                        &scopes,
                        h,
                        Box::pin(futures::stream::iter([Ok(piece)])),
                    )
                    .await?;
                if resp.status() != StatusCode::ACCEPTED {
                    return Err(self.error(&Method::PATCH, &location, resp).await);
                }
                location = self.location(&resp).await?;
                offset += len;
            }
            location
                .query_pairs_mut()
                .append_pair("digest", &desc.digest.to_string());
            let mut h = HeaderMap::new();
            h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            let resp = self
                .send_stream(
                    Method::PUT,
                    location.clone(),
                    &scopes,
                    h,
                    Box::pin(futures::stream::empty()),
                )
                .await?;
            if resp.status() != StatusCode::CREATED {
                return Err(self.error(&Method::PUT, &location, resp).await);
            }
            return Ok(());
        }
        location
            .query_pairs_mut()
            .append_pair("digest", &desc.digest.to_string());
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(CONTENT_LENGTH, HeaderValue::from(desc.size));
        let resp = self
            .send_stream(Method::PUT, location.clone(), &scopes, h, data)
            .await?;
        if resp.status() != StatusCode::CREATED {
            return Err(self.error(&Method::PUT, &location, resp).await);
        }
        Ok(())
    }

    /// The referrers of `digest` from the OCI 1.1 referrers API
    /// (`GET /v2/<repo>/referrers/<digest>`): the descriptors of the index it answers, or
    /// `Ok(None)` when the registry does not implement the API (404, as distribution 2.8
    /// answers), in which case clients use the `sha256-<hex>` tag-schema fallback. A 200 with
    /// an image index is the API (see `docs/interop/oras.md`).
    pub async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        let url = self.url(&format!("v2/{repo}/referrers/{digest}")).await?;
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_static(media_types::OCI_INDEX));
        let what = format!("referrers index of {}/{repo}@{digest}", self.host());
        let body = match self
            .get_document(&url, &[Scope::pull(repo)], h, MANIFEST_LIMIT, &what)
            .await?
        {
            Document::Body { bytes, .. } => bytes,
            Document::Status(resp) if resp.status() == StatusCode::NOT_FOUND => return Ok(None),
            Document::Status(resp) => return Err(self.error(&Method::GET, &url, resp).await),
        };
        // The answer alone says the API is there: a registry with it need not send
        // `OCI-Subject` on manifest PUTs (go-containerregistry's does not), so graft never waits
        // for that header. What it answers must be an image index, though: `manifests` is
        // required, and a `mediaType`, when given, must be the index's.
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Index {
            #[serde(default)]
            media_type: Option<String>,
            manifests: Vec<Descriptor>,
        }
        let index: Index = serde_json::from_slice(&body).map_err(|e| Error::Json {
            what: what.clone(),
            source: e,
        })?;
        if let Some(t) = index.media_type.filter(|t| t != media_types::OCI_INDEX) {
            return Err(Error::Invalid {
                what,
                reason: format!("its mediaType is {t}, not {}", media_types::OCI_INDEX),
            });
        }
        Ok(Some(index.manifests))
    }

    /// All tags of `repo`, following `Link` pagination.
    pub async fn list_tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = self.url(&format!("v2/{repo}/tags/list")).await?;
        let what = format!("tag list of {}/{repo}", self.host());
        let mut tags = Vec::new();
        // Pages seen: a registry whose Link points back at a page already read would
        // otherwise be followed forever.
        let mut seen = std::collections::HashSet::new();
        loop {
            if !seen.insert(url.clone()) {
                return Err(Error::Invalid {
                    what,
                    reason: format!(
                        "the Link header points back to a page already read ({}); stopped",
                        redact_url(&url)
                    ),
                });
            }
            if seen.len() > MAX_TAG_PAGES {
                return Err(Error::Invalid {
                    what,
                    reason: format!("more than {MAX_TAG_PAGES} pages; stopped"),
                });
            }
            let (headers, body) = match self
                .get_document(
                    &url,
                    &[Scope::pull(repo)],
                    HeaderMap::new(),
                    TAGS_PAGE_LIMIT,
                    &what,
                )
                .await?
            {
                Document::Body { headers, bytes } => (headers, bytes),
                Document::Status(resp) if resp.status() == StatusCode::NOT_FOUND => {
                    return Err(Error::NotFound {
                        what: format!("repository {}/{repo}", self.host()),
                        detail: Some(self.error(&Method::GET, &url, resp).await.to_string()),
                    });
                }
                Document::Status(resp) => return Err(self.error(&Method::GET, &url, resp).await),
            };
            let next = headers
                .get(reqwest::header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| l.split(';').next())
                .map(|l| {
                    l.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                });
            let list: TagList = serde_json::from_slice(&body).map_err(|e| Error::Json {
                what: what.clone(),
                source: e,
            })?;
            tags.extend(list.tags.unwrap_or_default());
            match next {
                Some(n) => {
                    let next = url.join(&n).map_err(|e| Error::Invalid {
                        what: format!("{what}: its Link header"),
                        reason: e.to_string(),
                    })?;
                    // The next page must be on the registry itself: the credentials for it
                    // would otherwise go wherever the registry points.
                    if !self.is_own_origin(&next).await? {
                        return Err(Error::Invalid {
                            what,
                            reason: format!(
                                "the Link header points to another origin ({}); graft follows \
                                 tag list pages only on the registry itself",
                                redact_url(&next)
                            ),
                        });
                    }
                    url = next;
                }
                None => break,
            }
        }
        Ok(tags)
    }
}
