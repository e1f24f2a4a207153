//! The tar headers graft writes into archives: deterministic ustar headers (a PAX extended
//! header first for names that do not fit), and the filler entries that cover the space of a
//! blob that was abandoned in the middle of an archive.

use crate::oci::tar::{comment_record, encode, EntryType, HeaderFields, Style};
pub(super) use crate::oci::tar::{padded, BLOCK};

/// Name of the filler headers, as `git archive` names its global header.
const FILLER_NAME: &str = "pax_global_header";

/// The largest data of one filler header: Go's `archive/tar` (skopeo) refuses PAX headers over
/// 1 MiB.
const FILLER_DATA_MAX: u64 = 512 * 1024;

/// The header block(s) of one member, ready to write before its bytes: mtime 0, uid/gid 0, no
/// user or group names, 0644 files / 0755 dirs (names ending in `/`). A name that does not fit
/// a ustar header (e.g. a sha512 blob, whose hex alone is 128 bytes) is carried by a PAX
/// extended header (`path=`) written first.
pub(super) fn member_header_bytes(name: &str, len: u64) -> Vec<u8> {
    let dir = name.ends_with('/');
    let mut out = Vec::with_capacity(BLOCK);
    encode(
        &HeaderFields {
            name,
            kind: if dir {
                EntryType::Directory
            } else {
                EntryType::File
            },
            mode: if dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            size: len,
            mtime: 0,
            link: "",
        },
        Style::Archive,
        &mut out,
    );
    out
}

/// A whole member (headers, bytes, padding) for a small document.
pub(super) fn member_bytes(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = member_header_bytes(name, data.len() as u64);
    out.extend_from_slice(data);
    out.resize(padded(out.len() as u64) as usize, 0);
    out
}

/// Write filler entries over `len` bytes (a positive multiple of [`BLOCK`]) through `write(bytes,
/// offset)`: POSIX global extended headers (`g`), each holding a single `comment` record padded
/// with spaces. Every tar reader skips them (POSIX says `comment` is ignored; `git archive`
/// writes such a header first), so an abandoned blob leaves no member behind.
pub(super) fn write_filler(
    len: u64,
    mut write: impl FnMut(&[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let block = BLOCK as u64;
    debug_assert!(len > 0 && len % block == 0, "filler of {len} bytes");
    let mut at = 0;
    while at < len {
        let data_len = (len - at - block).min(FILLER_DATA_MAX);
        let mut header = Vec::with_capacity(BLOCK);
        encode(
            &HeaderFields {
                name: FILLER_NAME,
                kind: EntryType::PaxGlobalHeader,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: data_len,
                mtime: 0,
                link: "",
            },
            Style::Archive,
            &mut header,
        );
        write(&header, at)?;
        at += block;
        if data_len > 0 {
            write(&comment_record(data_len as usize), at)?;
            at += data_len;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_member_names() {
        let read_back = |name: &str| {
            let mut bytes = member_bytes(name, b"x");
            bytes.extend_from_slice(&[0; 2 * BLOCK]);
            let mut ar = tar::Archive::new(&bytes[..]);
            let mut entries = ar.entries().unwrap();
            let e = entries.next().unwrap().unwrap();
            assert!(entries.next().is_none());
            String::from_utf8(e.path_bytes().to_vec()).unwrap()
        };
        let sha512 = format!("blobs/sha512/{}", "a".repeat(128));
        assert_eq!(read_back(&sha512), sha512);
        let deep = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert_eq!(read_back(&deep), deep);
        assert_eq!(read_back("blobs/sha256/"), "blobs/sha256/");
    }

    #[test]
    fn fillers_are_skipped_by_readers() {
        for len in [512u64, 1024, 4096, 2 * 1024 * 1024 + 1536] {
            let mut bytes = member_bytes("a", b"first");
            let start = bytes.len();
            bytes.resize(start + len as usize, 0xee);
            write_filler(len, |b, at| {
                let at = start + at as usize;
                bytes[at..at + b.len()].copy_from_slice(b);
                Ok(())
            })
            .unwrap();
            bytes.extend_from_slice(&member_bytes("b", b"second"));
            bytes.extend_from_slice(&[0; 1024]);
            let mut ar = tar::Archive::new(&bytes[..]);
            let mut files = Vec::new();
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                let kind = e.header().entry_type();
                if kind == tar::EntryType::XGlobalHeader {
                    // Valid PAX records: one `comment` each.
                    let exts: Vec<_> = e.pax_extensions().unwrap().unwrap().collect();
                    assert!(exts.len() <= 1);
                    for x in exts {
                        assert_eq!(x.unwrap().key().unwrap(), "comment");
                    }
                    continue;
                }
                let mut data = String::new();
                std::io::Read::read_to_string(&mut e, &mut data).unwrap();
                files.push((String::from_utf8(e.path_bytes().to_vec()).unwrap(), data));
            }
            assert_eq!(
                files,
                vec![("a".into(), "first".into()), ("b".into(), "second".into())],
                "filler of {len} bytes"
            );
        }
    }
}
