//! Unit tests of deterministic layers: ordering, overlay, whiteouts, modes, owners, links,
//! PAX names, every error with its message, determinism and golden digests.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;
use crate::oci::digest::Digest;

const MTIME: Timestamp = Timestamp(1_700_000_000);

/// A source tree in a temp dir.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn file(&self, rel: &str, content: &[u8], mode: u32) -> &Tree {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn dir(&self, rel: &str, mode: u32) -> &Tree {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn link(&self, rel: &str, target: &str) -> &Tree {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, &p).unwrap();
        self
    }

    fn hardlink(&self, existing: &str, rel: &str) -> &Tree {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::hard_link(self.path(existing), &p).unwrap();
        self
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::tree(self.root(), MTIME)
    }
}

/// What a tar entry says, read back with the `tar` crate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    path: String,
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    link: Option<String>,
    data: Vec<u8>,
    uname: Vec<u8>,
    gname: Vec<u8>,
}

fn read_tar(bytes: &[u8]) -> Vec<Seen> {
    let mut archive = ::tar::Archive::new(bytes);
    let mut out = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let path = String::from_utf8(e.path_bytes().into_owned()).unwrap();
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.into_owned()).unwrap());
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let ustar = h.as_ustar().expect("ustar header");
        out.push(Seen {
            path,
            kind: h.entry_type().as_byte() as char,
            mode: h.mode().unwrap(),
            uid: h.uid().unwrap(),
            gid: h.gid().unwrap(),
            mtime: h.mtime().unwrap(),
            link,
            data,
            uname: ustar.uname.iter().copied().filter(|&b| b != 0).collect(),
            gname: ustar.gname.iter().copied().filter(|&b| b != 0).collect(),
        });
    }
    out
}

fn tar_of(spec: &LayerSpec) -> Vec<u8> {
    let mut out = Vec::new();
    build(spec, Compression::None, &mut out).unwrap();
    out
}

fn entries(spec: &LayerSpec) -> Vec<Seen> {
    read_tar(&tar_of(spec))
}

fn names(spec: &LayerSpec) -> Vec<String> {
    entries(spec).into_iter().map(|e| e.path).collect()
}

fn err(spec: &LayerSpec) -> String {
    build(spec, Compression::None, std::io::sink())
        .unwrap_err()
        .to_string()
}

#[test]
fn entries_are_sorted_with_parents_first() {
    let t = Tree::new();
    t.file("b.txt", b"b", 0o644)
        .file("a/z", b"z", 0o644)
        .file("a.txt", b"a", 0o644)
        .file("a/b/c", b"c", 0o644)
        .file("A", b"upper", 0o644)
        .dir("a/empty", 0o755);
    assert_eq!(
        names(&t.spec()),
        ["A", "a/", "a/b/", "a/b/c", "a/empty/", "a/z", "a.txt", "b.txt"]
    );
}

#[test]
fn trees_overlay_in_order() {
    let lower = Tree::new();
    lower
        .file("etc/motd", b"lower", 0o644)
        .file("etc/lower-only", b"l", 0o644)
        .file("opt/tool/bin", b"old", 0o755)
        .file("opt/tool/lib", b"old", 0o644)
        .file("srv", b"a file", 0o644);
    let upper = Tree::new();
    upper
        .file("etc/motd", b"upper", 0o644)
        .file("etc/upper-only", b"u", 0o644)
        .file("opt/tool", b"now a file", 0o644)
        .file("srv/data", b"now a dir", 0o644);
    let mut spec = lower.spec();
    spec.trees.push(upper.root());
    let seen = entries(&spec);
    let summary: Vec<(String, Vec<u8>)> = seen.into_iter().map(|e| (e.path, e.data)).collect();
    let expect: Vec<(String, Vec<u8>)> = [
        ("etc/", &b""[..]),
        ("etc/lower-only", b"l"),
        ("etc/motd", b"upper"),
        ("etc/upper-only", b"u"),
        ("opt/", b""),
        ("opt/tool", b"now a file"),
        ("srv/", b""),
        ("srv/data", b"now a dir"),
    ]
    .iter()
    .map(|(p, d)| (p.to_string(), d.to_vec()))
    .collect();
    assert_eq!(summary, expect);
}

#[test]
fn remove_becomes_whiteouts_before_siblings() {
    let t = Tree::new();
    t.file("opt/app/new", b"n", 0o644)
        .file("etc/-x", b"", 0o644);
    let mut spec = t.spec();
    spec.remove = vec![
        "/opt/app".into(),
        "/var/cache/apt/".into(),
        "/etc/-x".into(),
        "/opt/app".into(),
    ];
    let seen = entries(&spec);
    let got: Vec<(&str, char, usize)> = seen
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.data.len()))
        .collect();
    assert_eq!(
        got,
        [
            ("etc/", '5', 0),
            ("etc/.wh.-x", '0', 0),
            ("etc/-x", '0', 0),
            ("opt/", '5', 0),
            ("opt/.wh.app", '0', 0),
            ("opt/app/", '5', 0),
            ("opt/app/new", '0', 1),
            ("var/", '5', 0),
            ("var/cache/", '5', 0),
            ("var/cache/.wh.apt", '0', 0),
        ]
    );
    assert!(seen
        .iter()
        .all(|e| e.mode == if e.kind == '5' { 0o755 } else { 0o644 }));
}

#[test]
fn remove_under_a_file_is_an_error() {
    let t = Tree::new();
    t.file("etc", b"not a dir", 0o644);
    let mut spec = t.spec();
    spec.remove = vec!["/etc/motd".into()];
    assert_eq!(
        err(&spec),
        "remove entry \"/etc/motd\": /etc is not a directory in the layer"
    );
}

#[test]
fn modes_are_normalised_unless_given() {
    let t = Tree::new();
    t.dir("private", 0o700)
        .file("private/key", b"k", 0o600)
        .file("bin/run", b"#!/bin/sh\n", 0o700)
        .file("bin/suid", b"x", 0o4755)
        .file("bin/group-exec", b"x", 0o610)
        .file("data", b"d", 0o666)
        .file("special", b"s", 0o644)
        .link("lnk", "data");
    let modes = |spec: &LayerSpec| -> Vec<(String, u32)> {
        entries(spec)
            .into_iter()
            .map(|e| (e.path, e.mode))
            .collect()
    };
    let normal = modes(&t.spec());
    assert_eq!(
        normal,
        [
            ("bin/".to_string(), 0o755),
            ("bin/group-exec".into(), 0o755),
            ("bin/run".into(), 0o755),
            ("bin/suid".into(), 0o755),
            ("data".into(), 0o644),
            ("lnk".into(), 0o777),
            ("private/".into(), 0o755),
            ("private/key".into(), 0o644),
            ("special".into(), 0o644),
        ]
    );
    let mut spec = t.spec();
    spec.modes = BTreeMap::from([
        ("/private".to_string(), 0o700),
        ("/private/key".to_string(), 0o600),
        ("/bin/suid/".to_string(), 0o4755),
    ]);
    let given = modes(&spec);
    assert!(given.contains(&("private/".into(), 0o700)));
    assert!(given.contains(&("private/key".into(), 0o600)));
    assert!(given.contains(&("bin/suid".into(), 0o4755)));
    assert!(given.contains(&("special".into(), 0o644)));
}

#[test]
fn owner_applies_to_every_entry_without_names() {
    let t = Tree::new();
    t.file("a/b", b"b", 0o644).link("c", "a/b");
    let mut spec = t.spec();
    spec.remove = vec!["/d".into()];
    for (owner, want) in [(None, (0, 0)), (Some((1000, 100)), (1000, 100))] {
        spec.owner = owner;
        let seen = entries(&spec);
        assert_eq!(seen.len(), 4);
        for e in seen {
            assert_eq!((e.uid, e.gid), want, "{}", e.path);
            assert_eq!(e.mtime, 1_700_000_000, "{}", e.path);
            assert!(e.uname.is_empty() && e.gname.is_empty(), "{}", e.path);
        }
    }
}

#[test]
fn symlinks_are_kept_not_followed() {
    let outside = Tree::new();
    outside.file("secret", b"outside", 0o644);
    let t = Tree::new();
    t.file("real/f", b"f", 0o644)
        .link("to-dir", "real")
        .link("abs", outside.path("secret").to_str().unwrap())
        .link("abs-dir", outside.root().to_str().unwrap())
        .link("dangling", "nowhere/at/all")
        .link("real/up", "../real/f");
    let seen = entries(&t.spec());
    let got: Vec<(&str, char, Option<&str>, usize)> = seen
        .iter()
        .map(|e| (e.path.as_str(), e.kind, e.link.as_deref(), e.data.len()))
        .collect();
    let abs = outside.path("secret");
    let root = outside.root();
    assert_eq!(
        got,
        [
            ("abs", '2', Some(abs.to_str().unwrap()), 0),
            ("abs-dir", '2', Some(root.to_str().unwrap()), 0),
            ("dangling", '2', Some("nowhere/at/all"), 0),
            ("real/", '5', None, 0),
            ("real/f", '0', None, 1),
            ("real/up", '2', Some("../real/f"), 0),
            ("to-dir", '2', Some("real"), 0),
        ]
    );
}

#[test]
fn hard_links_become_tar_links_to_the_first_path() {
    let t = Tree::new();
    t.file("z/original", b"shared bytes", 0o755)
        .hardlink("z/original", "a/link")
        .hardlink("z/original", "m")
        .file("single", b"one", 0o644);
    let seen = entries(&t.spec());
    let got: Vec<(&str, char, Option<&str>, &[u8])> = seen
        .iter()
        .map(|e| {
            (
                e.path.as_str(),
                e.kind,
                e.link.as_deref(),
                e.data.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a/", '5', None, &b""[..]),
            ("a/link", '0', None, b"shared bytes"),
            ("m", '1', Some("a/link"), b""),
            ("single", '0', None, b"one"),
            ("z/", '5', None, b""),
            ("z/original", '1', Some("a/link"), b""),
        ]
    );
}

#[test]
fn long_and_non_ascii_names_use_pax() {
    let t = Tree::new();
    let long_dir = "d".repeat(90);
    let long_name = format!("{long_dir}/{}", "f".repeat(60));
    let deep = format!("{long_dir}/{}/{}", "e".repeat(100), "g".repeat(100));
    t.file(&long_name, b"long", 0o644)
        .file(&deep, b"deep", 0o644)
        .file("données/résumé.txt", "é".as_bytes(), 0o644)
        .file("日本/ファイル", b"jp", 0o644)
        .link("long-link", &long_name)
        .hardlink(&long_name, "zz-hard");
    let seen = entries(&t.spec());
    let paths: Vec<&str> = seen.iter().map(|e| e.path.as_str()).collect();
    let long_dir_slash = format!("{long_dir}/");
    let deep_dir = format!("{long_dir}/{}/", "e".repeat(100));
    assert_eq!(
        paths,
        [
            long_dir_slash.as_str(),
            deep_dir.as_str(),
            deep.as_str(),
            long_name.as_str(),
            "données/",
            "données/résumé.txt",
            "long-link",
            "zz-hard",
            "日本/",
            "日本/ファイル",
        ]
    );
    assert_eq!(seen[2].data, b"deep");
    assert_eq!(seen[5].data, "é".as_bytes());
    assert_eq!(seen[6].link.as_deref(), Some(long_name.as_str()));
    assert_eq!(seen[7].link.as_deref(), Some(long_name.as_str()));
    assert_eq!(seen[7].kind, '1');
}

#[test]
fn empty_tree_is_two_zero_blocks() {
    let t = Tree::new();
    assert_eq!(tar_of(&t.spec()), vec![0u8; 1024]);
}

// ---- errors name the path ----

#[test]
fn fifo_socket_and_device_are_errors() {
    let t = Tree::new();
    t.dir("x", 0o755);
    let fifo = t.path("x/fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        err(&t.spec()),
        format!(
            "{}: is a fifo; a layer tree may hold only files, directories and symlinks",
            fifo.display()
        )
    );
    fs::remove_file(&fifo).unwrap();

    let sock = t.path("x/sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert_eq!(
        err(&t.spec()),
        format!(
            "{}: is a socket; a layer tree may hold only files, directories and symlinks",
            sock.display()
        )
    );
    fs::remove_file(&sock).unwrap();

    // Tests run as root, so mknod works.
    let dev = t.path("x/null");
    let status = std::process::Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        err(&t.spec()),
        format!(
            "{}: is a character device; a layer tree may hold only files, directories and symlinks",
            dev.display()
        )
    );
    fs::remove_file(&dev).unwrap();
    let blk = t.path("x/blk");
    let status = std::process::Command::new("mknod")
        .arg(&blk)
        .args(["b", "7", "0"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        err(&t.spec()),
        format!(
            "{}: is a block device; a layer tree may hold only files, directories and symlinks",
            blk.display()
        )
    );
}

#[test]
fn symlinks_escaping_the_tree_are_errors() {
    let t = Tree::new();
    t.link("a/b/ok", "../../top")
        .link("a/up", "../../etc/passwd");
    let path = t.path("a/up");
    assert_eq!(
        err(&t.spec()),
        format!(
            "{}: the symlink target \"../../etc/passwd\" points outside the tree",
            path.display()
        )
    );
    let t = Tree::new();
    t.link("dotdot", "..");
    assert_eq!(
        err(&t.spec()),
        format!(
            "{}: the symlink target \"..\" points outside the tree",
            t.path("dotdot").display()
        )
    );
}

#[test]
fn remove_entries_must_be_absolute_and_plain() {
    let t = Tree::new();
    let cases = [
        ("etc/motd", "not an absolute path (write \"/etc/motd\")"),
        ("./etc/motd", "not an absolute path (write \"/etc/motd\")"),
        ("/etc/../motd", "contains a \".\" or \"..\" component"),
        ("/etc/./motd", "contains a \".\" or \"..\" component"),
        ("/", "names the root directory"),
        ("", "not an absolute path (write \"/\")"),
    ];
    for (entry, reason) in cases {
        let mut spec = t.spec();
        spec.remove = vec![entry.to_string()];
        assert_eq!(err(&spec), format!("remove entry {entry:?}: {reason}"));
    }
}

#[test]
fn modes_entries_are_checked() {
    let t = Tree::new();
    t.file("etc/motd", b"m", 0o644);
    let cases = [
        (
            "/etc/issue",
            0o644,
            "names no file or directory in the layer",
        ),
        (
            "etc/motd",
            0o644,
            "not an absolute path (write \"/etc/motd\")",
        ),
        (
            "/etc/motd",
            0o10000,
            "mode 10000 is not between 0 and 7777 (octal)",
        ),
    ];
    for (entry, mode, reason) in cases {
        let mut spec = t.spec();
        spec.modes = BTreeMap::from([(entry.to_string(), mode)]);
        assert_eq!(err(&spec), format!("modes entry {entry:?}: {reason}"));
    }
}

#[test]
fn reserved_and_non_utf8_names_are_errors() {
    let t = Tree::new();
    t.file("etc/.wh.motd", b"", 0o644);
    assert_eq!(
        err(&t.spec()),
        format!(
            "{}: names starting with \".wh.\" are reserved for whiteouts; list the path under `remove` instead",
            t.path("etc/.wh.motd").display()
        )
    );
    let t = Tree::new();
    let bad = t
        .root()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9"));
    fs::write(&bad, b"x").unwrap();
    assert_eq!(
        err(&t.spec()),
        format!("{}: the name is not valid UTF-8", bad.display())
    );
}

#[test]
fn trees_must_be_directories() {
    let t = Tree::new();
    t.file("f", b"x", 0o644);
    let spec = LayerSpec::tree(t.path("f"), MTIME);
    assert_eq!(
        err(&spec),
        format!(
            "{}: a layer tree must be a directory",
            t.path("f").display()
        )
    );
    let spec = LayerSpec::tree(t.path("missing"), MTIME);
    let e = build(&spec, Compression::None, std::io::sink()).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("reading layer tree {}", t.path("missing").display())
    );
    assert!(matches!(e, Error::Io { .. }));
}

#[test]
fn files_that_change_while_read_are_errors() {
    let mut out = compress::HashingWriter::new(std::io::sink(), true);
    std::thread::scope(|scope| {
        let sink: Box<dyn compress::BlockSink> = Box::new(compress::PlainSink(&mut out));
        let mut blocks = compress::Blocks::new(scope, sink);
        let p = Path::new("/src/f");
        let e = blocks
            .copy_exact(&mut &b"abc"[..], 4, p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/src/f: the file shrank while the layer was built (expected 4 bytes)"
        );
        let e = blocks
            .copy_exact(&mut &b"abcde"[..], 4, p)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "/src/f: the file grew while the layer was built (expected 4 bytes)"
        );
    });
}

// ---- streams, compression, files ----

fn build_all(spec: &LayerSpec, threads: usize) -> Vec<(Compression, LayerDigests, Vec<u8>)> {
    [Compression::Gzip, Compression::Zstd, Compression::None]
        .into_iter()
        .map(|c| {
            let mut out = Vec::new();
            let d = build_with_threads(spec, c, &mut out, threads).unwrap();
            (c, d, out)
        })
        .collect()
}

/// Text-like bytes that compress but are not trivial: a fixed pseudo-random sequence of words.
fn text(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "star",
        "galaxy",
        "flux",
        "spectrum",
        "redshift",
        "pixel",
        "catalog",
        "survey",
        "\n",
        "0.125",
        "noise",
        "calibration",
    ];
    let mut x = seed;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(WORDS[(x >> 60) as usize % WORDS.len()].as_bytes());
        out.push(b' ');
    }
    out.truncate(len);
    out
}

/// The tree of the golden tests: every kind of entry, and a file spanning several blocks.
fn golden_tree() -> (Tree, LayerSpec) {
    let t = Tree::new();
    t.file("etc/motd", b"Welcome to the science platform\n", 0o644)
        .file(
            "etc/profile.d/compat.sh",
            b"export PATH=/opt/compat/bin:$PATH\n",
            0o600,
        )
        .file("opt/compat/bin/start", b"#!/bin/sh\nexec \"$@\"\n", 0o700)
        .hardlink("opt/compat/bin/start", "opt/compat/bin/launch")
        .link("opt/compat/current", "bin")
        .link("usr/local/bin/start", "/opt/compat/bin/start")
        .file("opt/compat/share/big.txt", &text(5 * CHUNK / 2, 7), 0o644)
        .file(
            &format!("opt/compat/share/{}", "n".repeat(120)),
            b"long",
            0o644,
        )
        .file("opt/compat/share/données", "é".as_bytes(), 0o644)
        .dir("srv/empty", 0o700);
    let mut spec = t.spec();
    spec.remove = vec!["/opt/conda/pkgs".into(), "/etc/motd".into()];
    spec.modes = BTreeMap::from([("/srv/empty".to_string(), 0o1777)]);
    (t, spec)
}

/// GOLDEN: these digests pin graft's layer bytes. If a dependency update (zlib-rs, zstd,
/// flate2) or a change to the tar writer alters them, this fails: the new bytes would give
/// every user's layers new digests. Change them only on purpose, with a decision record.
#[test]
fn golden_digests() {
    let (_t, spec) = golden_tree();
    let got: Vec<(Compression, String, String, u64)> = build_all(&spec, 3)
        .into_iter()
        .map(|(c, d, _)| (c, d.digest.to_string(), d.diff_id.to_string(), d.size))
        .collect();
    let diff_id = "sha256:0441db0c1c2cea970dd0692248e49b918e824eb655de5b10f17887590db1d1c0";
    let want = vec![
        (
            Compression::Gzip,
            "sha256:be954d9e55d7ff95d34ef8951ef4e57c1f0b9b1d083808e645037d73c3c55a6a".to_string(),
            diff_id.to_string(),
            318_603u64,
        ),
        (
            Compression::Zstd,
            "sha256:1e12c310c5f61395f8683113cb4e67891feea1a7d6a520e067b044f185f64cca".to_string(),
            diff_id.to_string(),
            420_273,
        ),
        (
            Compression::None,
            diff_id.to_string(),
            diff_id.to_string(),
            2_638_848,
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn digests_match_the_bytes_and_decompress_to_the_tar() {
    let (_t, spec) = golden_tree();
    let all = build_all(&spec, 2);
    let tar = &all[2].2;
    for (c, d, bytes) in &all {
        assert_eq!(d.digest, Digest::sha256(bytes), "{c}");
        assert_eq!(d.size, bytes.len() as u64, "{c}");
        assert_eq!(d.diff_id, Digest::sha256(tar), "{c}");
        assert_eq!(d.media_type, c.media_type());
        let plain = match c {
            Compression::Gzip => {
                assert_eq!(&bytes[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
                let mut v = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut v)
                    .unwrap();
                v
            }
            Compression::Zstd => zstd::stream::decode_all(&bytes[..]).unwrap(),
            Compression::None => bytes.clone(),
        };
        assert!(&plain == tar, "{c} does not decompress to the tar");
    }
    assert!(
        tar.len() > 2 * CHUNK,
        "the golden tree spans several blocks"
    );
    assert!(all[0].2.len() < tar.len() / 2, "gzip compresses");
    assert!(all[1].2.len() < tar.len() / 2, "zstd compresses");
}

#[test]
fn gzip_bytes_do_not_depend_on_the_thread_count() {
    let (_t, spec) = golden_tree();
    let one = build_all(&spec, 1);
    for threads in [2, 5] {
        let other = build_all(&spec, threads);
        for (a, b) in one.iter().zip(&other) {
            assert!(a.2 == b.2, "{} differs with {threads} threads", a.0);
        }
    }
}

/// Bytes that do not compress (like a wheel or a tarball inside a layer): a fixed
/// pseudo-random sequence.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tree whose tar has blocks of every kind: all noise (stored), all text (deflated), and
/// one where noise is followed by text (deflated: a sampled window compresses).
fn mixed_tree() -> (Tree, LayerSpec) {
    let t = Tree::new();
    t.file("opt/wheels/a.whl", &noise(2 * CHUNK + 1000, 11), 0o644)
        .file("opt/share/notes.txt", &text(CHUNK + CHUNK / 2, 3), 0o644)
        .file("opt/wheels/b.whl", &noise(CHUNK / 3, 12), 0o644);
    let spec = t.spec();
    (t, spec)
}

/// GOLDEN: the stored-block path (see docs/decisions.md §7): incompressible blocks are
/// written as stored deflate blocks, the others deflated. Pins the bytes of both kinds.
#[test]
fn golden_digests_with_incompressible_blocks() {
    let (_t, spec) = mixed_tree();
    let all = build_all(&spec, 2);
    let (_, gz, bytes) = &all[0];
    assert_eq!(
        (gz.digest.to_string(), gz.diff_id.to_string(), gz.size),
        (
            "sha256:ace1a61bec4ad388dcf3aaf7111dd5b39e30a8a3088ed002b0ec91ee5245a94f".to_string(),
            "sha256:2fb36e26615132bbf7e8ca6a44f2926c183bd221a1fbbd8616717770ab0ec5bd".to_string(),
            2_642_141u64,
        )
    );
    let tar = &all[2].2;
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert!(&plain == tar, "gzip does not decompress to the tar");
    // The noise costs 5 bytes per 64 KiB stored block; the text is compressed.
    let noise_len = 2 * CHUNK + 1000 + CHUNK / 3;
    assert!(bytes.len() > noise_len, "noise cannot shrink");
    assert!(
        bytes.len() < tar.len() - CHUNK / 2,
        "the text blocks are deflated"
    );
}

#[test]
fn stored_blocks_do_not_depend_on_the_thread_count() {
    let (_t, spec) = mixed_tree();
    let one = build_all(&spec, 1);
    for threads in [2, 3] {
        let other = build_all(&spec, threads);
        assert!(
            one[0].2 == other[0].2,
            "gzip differs with {threads} threads"
        );
    }
}

/// Whole blocks of noise come out as stored deflate blocks: each 1 MiB block is 17 blocks of
/// at most 65535 bytes, each behind a 5-byte header (00, LEN, NLEN), holding the tar bytes.
#[test]
fn blocks_of_noise_are_stored() {
    let t = Tree::new();
    t.file("n", &noise(4 * CHUNK, 5), 0o644);
    let spec = t.spec();
    let all = build_all(&spec, 2);
    let (gz, tar) = (&all[0].2, &all[2].2);
    let mut at = 10; // after the gzip header
    for chunk in tar.chunks(CHUNK).take(4) {
        assert_eq!(chunk.len(), CHUNK);
        for piece in chunk.chunks(0xffff) {
            let len = piece.len() as u16;
            assert_eq!(gz[at], 0, "a stored block header at {at}");
            assert_eq!(&gz[at + 1..at + 3], &len.to_le_bytes());
            assert_eq!(&gz[at + 3..at + 5], &(!len).to_le_bytes());
            assert!(&gz[at + 5..at + 5 + piece.len()] == piece);
            at += 5 + piece.len();
        }
    }
    // The short tail (the end of the noise and the tar trailer) is deflated.
    assert!(gz.len() - at < tar.len() - 4 * CHUNK);
}

/// The same logical tree made twice: different creation order, permission bits that
/// normalise alike (0600 vs 0644, 0700 vs 0755), different mtimes and owners, different temp
/// dirs. The layers must be identical.
#[test]
fn same_tree_made_differently_gives_the_same_digests() {
    struct Item {
        path: &'static str,
        content: &'static [u8],
        modes: (u32, u32),
    }
    let items = [
        Item {
            path: "etc/conf",
            content: b"conf",
            modes: (0o600, 0o644),
        },
        Item {
            path: "etc/deeper/x",
            content: b"x",
            modes: (0o644, 0o664),
        },
        Item {
            path: "bin/tool",
            content: b"#!/bin/sh\n",
            modes: (0o700, 0o755),
        },
        Item {
            path: "bin/other",
            content: b"exe",
            modes: (0o711, 0o500),
        },
        Item {
            path: "a/b/c/d",
            content: b"deep",
            modes: (0o640, 0o444),
        },
        Item {
            path: "zz",
            content: b"last",
            modes: (0o644, 0o600),
        },
    ];
    let make = |reverse: bool, age: u64, owner: u32| -> Tree {
        let t = Tree::new();
        let order: Vec<&Item> = if reverse {
            items.iter().rev().collect()
        } else {
            items.iter().collect()
        };
        for it in order {
            let mode = if reverse { it.modes.1 } else { it.modes.0 };
            t.file(it.path, it.content, mode);
        }
        if reverse {
            t.link("lnk", "etc/conf").hardlink("zz", "hard");
        } else {
            t.hardlink("zz", "hard").link("lnk", "etc/conf");
        }
        // Directory modes differ too, then everything gets its own mtime and owner.
        t.dir("etc", if reverse { 0o700 } else { 0o775 });
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(age);
        let mut all: Vec<PathBuf> = walk(&t.root());
        all.sort();
        for (i, p) in all.iter().enumerate() {
            std::os::unix::fs::lchown(p, Some(owner + i as u32), Some(owner + 7)).unwrap();
            if !p.is_symlink() && p.is_file() {
                let f = fs::File::options().write(true).open(p).unwrap();
                f.set_modified(when + Duration::from_secs(i as u64))
                    .unwrap();
            }
        }
        std::os::unix::fs::chown(t.root(), Some(owner), Some(owner)).unwrap();
        t
    };
    let a = make(false, 1_000_000, 0);
    let b = make(true, 1_600_000_000, 4242);
    assert_ne!(a.root(), b.root());
    for ((c, da, ba), (_, db, bb)) in build_all(&a.spec(), 2)
        .into_iter()
        .zip(build_all(&b.spec(), 2))
    {
        assert_eq!(da, db, "{c}");
        assert!(ba == bb, "{c}");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn build_to_file_renames_into_place_and_cleans_up() {
    let (_t, spec) = golden_tree();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("layer.tar.gz");
    let d = build_to_file(&spec, Compression::Gzip, &path).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(d.digest, Digest::sha256(&bytes));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let listing: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listing, ["layer.tar.gz"]);

    // A failing build leaves neither the file nor a temp file behind.
    let mut bad = spec.clone();
    bad.remove = vec!["relative".into()];
    let path2 = out.path().join("bad.tar.gz");
    assert!(build_to_file(&bad, Compression::Gzip, &path2).is_err());
    let listing: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listing, ["layer.tar.gz"]);
}

#[test]
fn compression_names_and_media_types() {
    for (s, c, mt) in [
        (
            "gzip",
            Compression::Gzip,
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            "zstd",
            Compression::Zstd,
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            "none",
            Compression::None,
            "application/vnd.oci.image.layer.v1.tar",
        ),
    ] {
        assert_eq!(s.parse::<Compression>().unwrap(), c);
        assert_eq!(c.to_string(), s);
        assert_eq!(c.media_type(), mt);
    }
    assert_eq!(
        "xz".parse::<Compression>().unwrap_err().to_string(),
        "unknown compression \"xz\": expected gzip, zstd or none"
    );
}
