//! Tar headers built by hand: POSIX ustar with PAX extended headers where ustar cannot say it
//! (long or non-ASCII names and link targets, huge sizes, ids or times). Every field graft
//! does not set is fixed (no user or group names, device numbers zero), so a header depends
//! only on the values passed in.

/// Size of a tar block.
pub const BLOCK: usize = 512;

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
}

impl EntryType {
    fn flag(self) -> u8 {
        match self {
            EntryType::File => b'0',
            EntryType::HardLink => b'1',
            EntryType::Symlink => b'2',
            EntryType::Directory => b'5',
        }
    }
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
/// Largest value of an 8-byte octal field (7 digits).
const MAX_OCTAL_7: u64 = 0o7777777;
/// Largest value of a 12-byte octal field (11 digits).
const MAX_OCTAL_11: u64 = 0o77777777777;
/// The name given to PAX extended headers (fixed, unlike GNU tar's default which holds a pid).
const PAX_NAME: &str = "PaxHeaders/entry";

/// Append the header block(s) for `f` to `out`: a PAX extended header first when needed, then
/// the ustar header. Data blocks are not written here.
pub fn encode(f: &HeaderFields<'_>, out: &mut Vec<u8>) {
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
    let clamp_time = if f.mtime < 0 {
        0
    } else {
        (f.mtime as u64).min(MAX_OCTAL_11)
    };
    if !pax.is_empty() {
        let mut records = Vec::new();
        for (k, v) in &pax {
            records.extend_from_slice(&pax_record(k, v));
        }
        let ext = HeaderFields {
            name: PAX_NAME,
            kind: EntryType::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: records.len() as u64,
            mtime: clamp_time as i64,
            link: "",
        };
        out.extend_from_slice(&ustar(&ext, b'x'));
        out.extend_from_slice(&records);
        pad(out, records.len() as u64);
    }
    out.extend_from_slice(&ustar(f, f.kind.flag()));
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

/// The archive's end: two zero blocks.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

fn fits_ustar_name(s: &str) -> bool {
    s.len() <= NAME_LEN && s.is_ascii()
}

/// One PAX record, `"<len> <key>=<value>\n"`, where `<len>` counts the whole record including
/// its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// The 512-byte ustar header block. Fields that do not fit are truncated or clamped; the PAX
/// header written before it carries the real values.
fn ustar(f: &HeaderFields<'_>, flag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    copy_truncated(&mut h[0..100], f.name);
    octal(&mut h[100..108], u64::from(f.mode & 0o7777));
    octal(&mut h[108..116], f.uid.min(MAX_OCTAL_7));
    octal(&mut h[116..124], f.gid.min(MAX_OCTAL_7));
    octal(&mut h[124..136], f.size.min(MAX_OCTAL_11));
    let mtime = if f.mtime < 0 {
        0
    } else {
        (f.mtime as u64).min(MAX_OCTAL_11)
    };
    octal(&mut h[136..148], mtime);
    h[156] = flag;
    copy_truncated(&mut h[157..257], f.link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // uname (265..297) and gname (297..329) stay empty: numeric ids only.
    octal(&mut h[329..337], 0);
    octal(&mut h[337..345], 0);
    // prefix (345..500) stays empty: long names go into a PAX header instead.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
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

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record("path", "a"), b"9 path=a\n");
        assert_eq!(pax_record("path", "abcdefgh"), b"17 path=abcdefgh\n");
        // 98 bytes without the length, whose two digits would make 100: three digits, 101.
        let long = "x".repeat(91);
        let r = pax_record("path", &long);
        assert_eq!(r.len(), 101);
        assert!(r.starts_with(b"101 path="));
    }

    #[test]
    fn short_ascii_name_is_one_block() {
        let mut out = Vec::new();
        encode(&fields("etc/hosts"), &mut out);
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
        let mut out = Vec::new();
        encode(&fields(&long), &mut out);
        assert_eq!(out.len(), 3 * BLOCK);
        assert_eq!(out[156], b'x');
        let record = format!("135 path={long}\n");
        assert_eq!(&out[BLOCK..BLOCK + record.len()], record.as_bytes());
        assert_eq!(out[2 * BLOCK + 156], b'0');

        let mut out = Vec::new();
        encode(&fields("données/é"), &mut out);
        assert_eq!(out.len(), 3 * BLOCK);
        assert!(out[BLOCK..].starts_with("20 path=données/é\n".as_bytes()));
    }

    #[test]
    fn huge_values_go_to_pax() {
        let mut f = fields("big");
        f.size = MAX_OCTAL_11 + 1;
        f.uid = MAX_OCTAL_7 + 1;
        f.mtime = -1;
        let mut out = Vec::new();
        encode(&f, &mut out);
        let text = String::from_utf8_lossy(&out[BLOCK..2 * BLOCK]);
        assert!(
            text.starts_with("12 mtime=-1\n19 size=8589934592\n15 uid=2097152\n"),
            "{text}"
        );
    }
}
