//! The tar headers graft writes into archives: deterministic ustar headers (a PAX extended
//! header first for names that do not fit), and the filler entries that cover the space of a
//! blob that was abandoned in the middle of an archive.

/// The tar block size.
pub(super) const BLOCK: u64 = 512;

/// Name of the filler headers, as `git archive` names its global header.
const FILLER_NAME: &str = "pax_global_header";

/// The largest data of one filler header: Go's `archive/tar` (skopeo) refuses PAX headers over
/// 1 MiB.
const FILLER_DATA_MAX: u64 = 512 * 1024;

/// `size` rounded up to whole blocks.
pub(super) fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK
}

/// The header block(s) of one member, ready to write before its bytes.
pub(super) fn member_header_bytes(name: &str, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK as usize);
    for (header, data) in member_headers(name, len) {
        out.extend_from_slice(header.as_bytes());
        if !data.is_empty() {
            out.extend_from_slice(&data);
            out.resize(padded(out.len() as u64) as usize, 0);
        }
    }
    out
}

/// A whole member (headers, bytes, padding) for a small document.
pub(super) fn member_bytes(name: &str, data: &[u8]) -> Vec<u8> {
    let mut out = member_header_bytes(name, data.len() as u64);
    out.extend_from_slice(data);
    out.resize(padded(out.len() as u64) as usize, 0);
    out
}

/// The deterministic header(s) of one member: mtime 0, uid/gid 0, no user or group names,
/// 0644 files / 0755 dirs. A name that does not fit a ustar header (e.g. a sha512 blob, whose
/// hex alone is 128 bytes) is carried by a PAX extended header (`path=`) written first.
pub(super) fn member_headers(name: &str, len: u64) -> Vec<(tar::Header, Vec<u8>)> {
    let dir = name.ends_with('/');
    let kind = if dir {
        tar::EntryType::Directory
    } else {
        tar::EntryType::Regular
    };
    let mut out = Vec::new();
    let mut main = base_header(kind, len, if dir { 0o755 } else { 0o644 });
    if !set_ustar_name(&mut main, name.as_bytes()) {
        let record = pax_record("path", name);
        let mut pax = base_header(tar::EntryType::XHeader, record.len() as u64, 0o644);
        let short = truncate_name(&format!("PaxHeaders/{}", name.trim_end_matches('/')));
        set_ustar_name(&mut pax, short.as_bytes());
        pax.set_cksum();
        out.push((pax, record));
        set_ustar_name(&mut main, truncate_name(name).as_bytes());
    }
    main.set_cksum();
    out.push((main, Vec::new()));
    out
}

fn base_header(kind: tar::EntryType, len: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(len);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Put `name` in the ustar name field, or split at a '/' into prefix (155 bytes) and name
/// (100 bytes). `false` if it does not fit.
fn set_ustar_name(h: &mut tar::Header, name: &[u8]) -> bool {
    let ustar = h.as_ustar_mut().expect("a ustar header");
    if name.len() <= ustar.name.len() {
        ustar.name[..name.len()].copy_from_slice(name);
        return true;
    }
    let split = (0..name.len())
        .rev()
        .filter(|&i| name[i] == b'/' && i + 1 < name.len())
        .find(|&i| i <= ustar.prefix.len() && name.len() - i - 1 <= ustar.name.len());
    match split {
        Some(i) => {
            ustar.prefix[..i].copy_from_slice(&name[..i]);
            ustar.name[..name.len() - i - 1].copy_from_slice(&name[i + 1..]);
            true
        }
        None => false,
    }
}

/// The first 100 bytes of an ASCII name (a placeholder for readers without PAX support).
fn truncate_name(name: &str) -> String {
    name.chars().take(100).collect()
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.
pub(super) fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// Write filler entries over `len` bytes (a positive multiple of [`BLOCK`]) through `write(bytes,
/// offset)`: POSIX global extended headers (`g`), each holding a single `comment` record padded
/// with spaces. Every tar reader skips them (POSIX says `comment` is ignored; `git archive`
/// writes such a header first), so an abandoned blob leaves no member behind.
pub(super) fn write_filler(
    len: u64,
    mut write: impl FnMut(&[u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    debug_assert!(len > 0 && len % BLOCK == 0, "filler of {len} bytes");
    let mut at = 0;
    while at < len {
        let data_len = (len - at - BLOCK).min(FILLER_DATA_MAX);
        let mut header = base_header(tar::EntryType::XGlobalHeader, data_len, 0o644);
        set_ustar_name(&mut header, FILLER_NAME.as_bytes());
        header.set_cksum();
        write(header.as_bytes(), at)?;
        at += BLOCK;
        if data_len > 0 {
            write(&comment_record(data_len as usize), at)?;
            at += data_len;
        }
    }
    Ok(())
}

/// A `comment` PAX record of exactly `len` bytes (at least 12).
fn comment_record(len: usize) -> Vec<u8> {
    let prefix = format!("{len} comment=");
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(prefix.as_bytes());
    out.resize(len - 1, b' ');
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_member_names() {
        let read_back = |name: &str| {
            let mut b = tar::Builder::new(Vec::new());
            let mut headers = member_headers(name, 1);
            let (main, _) = headers.pop().unwrap();
            for (h, data) in headers {
                b.append(&h, &data[..]).unwrap();
            }
            b.append(&main, &b"x"[..]).unwrap();
            let bytes = b.into_inner().unwrap();
            assert_eq!(
                &bytes[..member_header_bytes(name, 1).len()],
                &member_header_bytes(name, 1)[..]
            );
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
        assert_eq!(pax_record("path", "abc"), b"12 path=abc\n");
        for n in [85, 90, 91, 92, 1000] {
            let r = pax_record("path", &"x".repeat(n));
            let stated: usize = std::str::from_utf8(&r)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(stated, r.len(), "value of {n} bytes");
        }
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
