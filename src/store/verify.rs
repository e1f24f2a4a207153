//! Digest and size verification while streaming.

use bytes::Bytes;
use futures::StreamExt;

use crate::error::Error;
use crate::oci::{Descriptor, Digester};
use crate::store::BlobStream;

/// Wrap `inner` so that it fails when its bytes exceed `desc.size`, or when it ends with the
/// wrong size or digest. `what` names the blob in errors.
pub fn verify_stream(inner: BlobStream, desc: &Descriptor, what: String) -> BlobStream {
    // Each chunk is held back until the next one arrives, and the last one until the digest
    // has been checked: a consumer never sees the complete bytes of a corrupt blob, so an
    // upload of it is cut short instead of completing.
    struct State {
        inner: BlobStream,
        digester: Option<Digester>,
        pending: Option<Bytes>,
        desc: Descriptor,
        what: String,
    }
    let state = State {
        inner,
        digester: Some(Digester::new(desc.digest.algorithm())),
        pending: None,
        desc: desc.clone(),
        what,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            let digester = st.digester.as_mut()?;
            match st.inner.next().await {
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(Ok(chunk)) => {
                    digester.update(&chunk);
                    if digester.len() > st.desc.size {
                        let found = digester.len();
                        st.digester = None;
                        let err = Error::SizeMismatch {
                            what: st.what.clone(),
                            expected: st.desc.size,
                            found,
                        };
                        return Some((Err(err), st));
                    }
                    match st.pending.replace(chunk) {
                        Some(previous) => return Some((Ok(previous), st)),
                        None => continue,
                    }
                }
                Some(Err(e)) => {
                    st.digester = None;
                    return Some((Err(e), st));
                }
                None => {
                    let digester = st.digester.take()?;
                    if digester.len() != st.desc.size {
                        let err = Error::SizeMismatch {
                            what: st.what.clone(),
                            expected: st.desc.size,
                            found: digester.len(),
                        };
                        return Some((Err(err), st));
                    }
                    let found = digester.finish();
                    if found != st.desc.digest {
                        let err = Error::DigestMismatch {
                            what: st.what.clone(),
                            expected: st.desc.digest.clone(),
                            found,
                        };
                        return Some((Err(err), st));
                    }
                    return st.pending.take().map(|last| (Ok(last), st));
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Digest;

    async fn drain(s: BlobStream) -> Result<usize, Error> {
        let chunks: Vec<_> = s.collect().await;
        let mut n = 0;
        for c in chunks {
            n += c?.len();
        }
        Ok(n)
    }

    fn stream(parts: &[&'static [u8]]) -> BlobStream {
        let v: Vec<Result<Bytes, Error>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures::stream::iter(v))
    }

    #[tokio::test]
    async fn passes_good_and_catches_bad() {
        let desc = Descriptor::new("x", Digest::sha256(b"hello world"), 11);
        assert_eq!(
            drain(verify_stream(
                stream(&[b"hello ", b"world"]),
                &desc,
                "b".into()
            ))
            .await
            .unwrap(),
            11
        );
        let e = drain(verify_stream(
            stream(&[b"hello ", b"worlD"]),
            &desc,
            "b".into(),
        ))
        .await
        .unwrap_err();
        assert!(matches!(e, Error::DigestMismatch { .. }));
        let e = drain(verify_stream(
            stream(&[b"hello ", b"world!"]),
            &desc,
            "b".into(),
        ))
        .await
        .unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { .. }));
        let e = drain(verify_stream(stream(&[b"hello"]), &desc, "b".into()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::SizeMismatch { found: 5, .. }));
        // The last chunk of a corrupt blob is never handed out.
        let mut s = verify_stream(stream(&[b"hello ", b"worlD"]), &desc, "b".into());
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"hello ");
        assert!(s.next().await.unwrap().is_err());
        let empty = Descriptor::new("x", Digest::sha256(b""), 0);
        assert_eq!(
            drain(verify_stream(stream(&[]), &empty, "e".into()))
                .await
                .unwrap(),
            0
        );
    }
}
