//! Tar headers, built by hand: the one place graft encodes the tar format, for layers and for
//! `oci-archive:` files alike.
//!
//! Headers are POSIX ustar, with a PAX extended header first where ustar cannot say a value.
//! Every field graft does not set is fixed (no user or group names), so a header depends only
//! on the values passed in. The fields POSIX leaves open are spelled in one of two [`Style`]s,
//! because bytes already published depend on each: layer digests (pinned by the golden tests
//! in `layer/tests.rs`) on the first, archives written by earlier versions (taken over when a
//! write is resumed) on the second.

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// The archive's end: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// The entry types graft writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryType {
    /// A regular file (`'0'`).
    File,
    /// A hard link to an earlier entry (`'1'`).
    HardLink,
    /// A symbolic link (`'2'`).
    Symlink,
    /// A directory (`'5'`).
    Directory,
    /// A PAX extended header for the next entry (`'x'`).
    PaxHeader,
    /// A PAX global extended header (`'g'`).
    PaxGlobalHeader,
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::File => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::Directory => b'5',
            EntryType::PaxHeader => b'x',
            EntryType::PaxGlobalHeader => b'g',
        }
    }
}

/// How a header spells what POSIX leaves open, and what it does with a value ustar cannot
/// hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Layers (as GNU tar writes): checksum as six octal digits, NUL, space; device numbers as
    /// zero digits; a name or link target over 100 bytes or not ASCII, and any number too
    /// large, goes into a PAX header named [`PAX_NAME`] (keys sorted).
    Layer,
    /// Archives (as the `tar` crate writes, which graft's archives were written with first):
    /// checksum as seven octal digits and NUL; device numbers empty; a long name is split into
    /// the ustar prefix and name at a `/` where it fits, else goes into a PAX `path` header
    /// named `PaxHeaders/<name>`; a size from 8 GiB on is written in base-256. The members
    /// graft writes in this style have ASCII names and uid, gid and mtime 0.
    Archive,
}

/// What one entry's header says.
#[derive(Debug, Clone)]
pub struct HeaderFields<'a> {
    /// The entry's name in the archive (directories end in `/`).
    pub name: &'a str,
    /// The entry type.
    pub kind: EntryType,
    /// Permission bits (at most `0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u64,
    /// Owner group id.
    pub gid: u64,
    /// Size of the data that follows (0 for anything but files).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Link target (symlinks and hard links), else empty.
    pub link: &'a str,
}

const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_11: u64 = 0o77777777777;
/// The name of the PAX extended headers of layers (fixed, unlike GNU tar's default, which
/// holds a pid).
pub const PAX_NAME: &str = "PaxHeaders/entry";

/// Append the header block(s) for `f` to `out` in `style`: a PAX extended header first when
/// needed, then the ustar header. Data blocks are not written here.
pub fn encode(f: &HeaderFields<'_>, style: Style, out: &mut Vec<u8>) {
    match style {
        Style::Layer => encode_layer(f, out),
        Style::Archive => encode_archive(f, out),
    }
}

fn encode_layer(f: &HeaderFields<'_>, out: &mut Vec<u8>) {
    let mut pax: Vec<(&str, String)> = Vec::new();
    if !fits_ustar_name(f.name) {
        pax.push(("path", f.name.to_string()));
    }
    if !fits_ustar_name(f.link) {
        pax.push(("linkpath", f.link.to_string()));
    }
    if f.size > MAX_OCTAL_11 {
        pax.push(("size", f.size.to_string()));
    }
    if f.uid > MAX_OCTAL_7 {
        pax.push(("uid", f.uid.to_string()));
    }
    if f.gid > MAX_OCTAL_7 {
        pax.push(("gid", f.gid.to_string()));
    }
    if f.mtime < 0 || f.mtime as u64 > MAX_OCTAL_11 {
        pax.push(("mtime", f.mtime.to_string()));
    }
    // Keys in a fixed order (sorted), so the extended header is deterministic.
    pax.sort_by(|a, b| a.0.cmp(b.0));
    let mtime = clamp_time(f.mtime);
    if !pax.is_empty() {
        let mut records = Vec::new();
        for (k, v) in &pax {
            records.extend_from_slice(&pax_record(k, v));
        }
        let ext = Ustar {
            name: PAX_NAME,
            prefix: "",
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: records.len() as u64,
            mtime,
            flag: EntryType::PaxHeader.flag(),
            link: "",
        };
        out.extend_from_slice(&ext.block(Style::Layer));
        out.extend_from_slice(&records);
        pad(out, records.len() as u64);
    }
    let main = Ustar {
        name: f.name,
        prefix: "",
        mode: f.mode,
        uid: f.uid,
        gid: f.gid,
        size: f.size,
        mtime,
        flag: f.kind.flag(),
        link: f.link,
    };
    out.extend_from_slice(&main.block(Style::Layer));
}

fn encode_archive(f: &HeaderFields<'_>, out: &mut Vec<u8>) {
    let mut main = Ustar {
        name: f.name,
        prefix: "",
        mode: f.mode,
        uid: f.uid,
        gid: f.gid,
        size: f.size,
        mtime: clamp_time(f.mtime),
        flag: f.kind.flag(),
        link: f.link,
    };
    if let Some((prefix, name)) = split_ustar_name(f.name) {
        main.prefix = prefix;
        main.name = name;
        out.extend_from_slice(&main.block(Style::Archive));
        return;
    }
    let record = pax_record("path", f.name);
    let pax_name = format!("PaxHeaders/{}", f.name.trim_end_matches('/'));
    // The ustar name fields are cut to 100 bytes: readers without PAX see a placeholder.
    let ext = Ustar {
        name: &pax_name,
        mode: 0o644,
        size: record.len() as u64,
        flag: EntryType::PaxHeader.flag(),
        link: "",
        ..main
    };
    out.extend_from_slice(&ext.block(Style::Archive));
    out.extend_from_slice(&record);
    pad(out, record.len() as u64);
    out.extend_from_slice(&main.block(Style::Archive));
}

/// Append zero bytes to complete the block after `len` bytes of data.
pub fn pad(out: &mut Vec<u8>, len: u64) {
    out.resize(out.len() + padding(len), 0);
}

/// The number of zero bytes that complete the last block of `len` bytes of data.
pub fn padding(len: u64) -> usize {
    let rem = (len % BLOCK as u64) as usize;
    if rem == 0 {
        0
    } else {
        BLOCK - rem
    }
}

/// `len` rounded up to whole blocks.
pub fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn fits_ustar_name(s: &str) -> bool {
    s.len() <= NAME_LEN && s.is_ascii()
}

/// `name` as ustar (prefix, name): whole in the name field, or split at a `/` into prefix (155
/// bytes) and name (100 bytes). `None` if it does not fit.
fn split_ustar_name(name: &str) -> Option<(&str, &str)> {
    if name.len() <= NAME_LEN {
        return Some(("", name));
    }
    let bytes = name.as_bytes();
    (0..bytes.len())
        .rev()
        .filter(|&i| bytes[i] == b'/' && i + 1 < bytes.len())
        .find(|&i| i <= PREFIX_LEN && bytes.len() - i - 1 <= NAME_LEN)
        .map(|i| (&name[..i], &name[i + 1..]))
}

fn clamp_time(mtime: i64) -> u64 {
    if mtime < 0 {
        0
    } else {
        (mtime as u64).min(MAX_OCTAL_11)
    }
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including
/// its own digits.
pub fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// A PAX `comment` record of exactly `len` bytes (at least 12), its value spaces. POSIX says
/// readers ignore `comment`, so it fills space.
pub fn comment_record(len: usize) -> Vec<u8> {
    let prefix = format!("{len} comment=");
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(prefix.as_bytes());
    out.resize(len - 1, b' ');
    out.push(b'\n');
    out
}

/// The values of one ustar header block, numbers already in range except where the style has
/// a wider spelling.
struct Ustar<'a> {
    name: &'a str,
    prefix: &'a str,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    mtime: u64,
    flag: u8,
    link: &'a str,
}

impl Ustar<'_> {
    /// The 512-byte block. Fields that do not fit are truncated or clamped; a PAX header
    /// written before it carries the real values.
    fn block(&self, style: Style) -> [u8; BLOCK] {
        let mut h = [0u8; BLOCK];
        copy_truncated(&mut h[0..100], self.name);
        octal(&mut h[100..108], u64::from(self.mode & 0o7777));
        octal(&mut h[108..116], self.uid.min(MAX_OCTAL_7));
        octal(&mut h[116..124], self.gid.min(MAX_OCTAL_7));
        if style == Style::Archive && self.size > MAX_OCTAL_11 {
            base256(&mut h[124..136], self.size);
        } else {
            octal(&mut h[124..136], self.size.min(MAX_OCTAL_11));
        }
        octal(&mut h[136..148], self.mtime.min(MAX_OCTAL_11));
        h[156] = self.flag;
        copy_truncated(&mut h[157..257], self.link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // uname (265..297) and gname (297..329) stay empty: numeric ids only.
        if style == Style::Layer {
            octal(&mut h[329..337], 0);
            octal(&mut h[337..345], 0);
        }
        copy_truncated(&mut h[345..500], self.prefix);
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        let text = match style {
            Style::Layer => format!("{sum:06o}\0 "),
            Style::Archive => format!("{sum:07o}\0"),
        };
        h[148..156].copy_from_slice(text.as_bytes());
        h
    }
}

/// Copy as much of `s` as fits, cutting at a character boundary (the PAX header holds the
/// full value).
fn copy_truncated(field: &mut [u8], s: &str) {
    let mut end = s.len().min(field.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    field[..end].copy_from_slice(&s.as_bytes()[..end]);
}

/// Zero-padded octal digits filling all but the last byte, which is NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    debug_assert_eq!(text.len(), digits, "value {value} does not fit");
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// The base-256 spelling of a number (GNU's extension): the high bit of the first byte set,
/// the value big-endian in the last eight bytes.
fn base256(field: &mut [u8], value: u64) {
    let at = field.len() - 8;
    field[..at].fill(0);
    field[at..].copy_from_slice(&value.to_be_bytes());
    field[0] |= 0x80;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(name: &str) -> HeaderFields<'_> {
        HeaderFields {
            name,
            kind: EntryType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 5,
            mtime: 1_700_000_000,
            link: "",
        }
    }

    fn layer(f: &HeaderFields<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(f, Style::Layer, &mut out);
        out
    }

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record("path", "a"), b"9 path=a\n");
        assert_eq!(pax_record("path", "abcdefgh"), b"17 path=abcdefgh\n");
        // 98 bytes without the length, whose two digits would make 100: three digits, 101.
        let long = "x".repeat(91);
        let r = pax_record("path", &long);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 path="));
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
        for n in [12, 99, 100, 1000] {
            let r = comment_record(n);
            assert_eq!(r.len(), n);
            assert!(r.starts_with(format!("{n} comment=").as_bytes()));
        }
    }

    #[test]
    fn short_ascii_name_is_one_block() {
        let out = layer(&fields("etc/hosts"));
        assert_eq!(out.len(), BLOCK);
        assert_eq!(&out[0..9], b"etc/hosts");
        assert_eq!(&out[100..108], b"0000644\0");
        assert_eq!(&out[124..136], b"00000000005\0");
        assert_eq!(&out[136..148], b"14524770400\0");
        assert_eq!(out[156], b'0');
        assert_eq!(&out[257..265], b"ustar\x0000");
        assert_eq!(&out[265..329], &[0u8; 64][..]);
        // The checksum is the byte sum with the checksum field read as spaces.
        let mut copy = out.clone();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&out[148..156], format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn long_and_non_ascii_names_get_pax_headers() {
        let long = format!("{}/file", "d".repeat(120));
        let out = layer(&fields(&long));
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(out[156], b'x');
        let record = format!("135 path={long}\n");
        assert_eq!(&out[BLOCK..BLOCK + record.len()], record.as_bytes());
        assert_eq!(out[2 * BLOCK + 156], b'0');

        let out = layer(&fields("données/é"));
        assert_eq!(out.len(), 3 * BLOCK);
        assert!(out[BLOCK..].starts_with("20 path=données/é\n".as_bytes()));
    }

    #[test]
    fn huge_values_go_to_pax() {
        let mut f = fields("big");
        f.size = MAX_OCTAL_11 + 1;
        f.uid = MAX_OCTAL_7 + 1;
        f.mtime = -1;
        let out = layer(&f);
        let text = String::from_utf8_lossy(&out[BLOCK..2 * BLOCK]);
        assert!(
            text.starts_with("12 mtime=-1\n19 size=8589934592\n15 uid=2097152\n"),
            "{text}"
        );
    }

    /// The archive style writes what the `tar` crate writes for the same member (as graft's
    /// archives did when they were built with it), PAX header included.
    #[test]
    fn archive_style_matches_the_tar_crate() {
        // The code that wrote archive headers before, unchanged.
        fn with_tar_crate(name: &str, len: u64) -> Vec<u8> {
            fn base_header(kind: ::tar::EntryType, len: u64, mode: u32) -> ::tar::Header {
                let mut h = ::tar::Header::new_ustar();
                h.set_entry_type(kind);
                h.set_size(len);
                h.set_mode(mode);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h
            }
            fn set_ustar_name(h: &mut ::tar::Header, name: &[u8]) -> bool {
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
            fn truncate_name(name: &str) -> String {
                name.chars().take(100).collect()
            }
            let dir = name.ends_with('/');
            let kind = if dir {
                ::tar::EntryType::Directory
            } else {
                ::tar::EntryType::Regular
            };
            let mut out = Vec::new();
            let mut main = base_header(kind, len, if dir { 0o755 } else { 0o644 });
            if !set_ustar_name(&mut main, name.as_bytes()) {
                let record = pax_record("path", name);
                let mut pax = base_header(::tar::EntryType::XHeader, record.len() as u64, 0o644);
                let short = truncate_name(&format!("PaxHeaders/{}", name.trim_end_matches('/')));
                set_ustar_name(&mut pax, short.as_bytes());
                pax.set_cksum();
                out.extend_from_slice(pax.as_bytes());
                out.extend_from_slice(&record);
                pad(&mut out, record.len() as u64);
                set_ustar_name(&mut main, truncate_name(name).as_bytes());
            }
            main.set_cksum();
            out.extend_from_slice(main.as_bytes());
            out
        }
        let sha512 = format!("blobs/sha512/{}", "a".repeat(128));
        let deep = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        let names = [
            "blobs/",
            "blobs/sha256/",
            "index.json",
            "oci-layout",
            &format!("blobs/sha256/{}", "b".repeat(64)),
            &sha512,
            &deep,
        ];
        for name in names {
            for len in [
                0,
                1,
                512,
                123_456_789,
                MAX_OCTAL_11,
                MAX_OCTAL_11 + 1,
                1 << 40,
            ] {
                let dir = name.ends_with('/');
                let f = HeaderFields {
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
                };
                let mut out = Vec::new();
                encode(&f, Style::Archive, &mut out);
                assert_eq!(out, with_tar_crate(name, len), "{name} of {len} bytes");
            }
        }
        // The filler headers of archives.
        for len in [0, 512, 512 * 1024] {
            let mut h = ::tar::Header::new_ustar();
            h.set_entry_type(::tar::EntryType::XGlobalHeader);
            h.set_size(len);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.as_ustar_mut().unwrap().name[..17].copy_from_slice(b"pax_global_header");
            h.set_cksum();
            let f = HeaderFields {
                name: "pax_global_header",
                kind: EntryType::PaxGlobalHeader,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: len,
                mtime: 0,
                link: "",
            };
            let mut out = Vec::new();
            encode(&f, Style::Archive, &mut out);
            assert_eq!(out, h.as_bytes(), "filler of {len} bytes");
        }
    }
}
