//! Hostile library files, layer trees and keys (issue 11): each is refused with an error that
//! names the file, the right exit code, in bounded time and memory, and nothing is written.
//! Every graft run here goes through `ulimit -v` (1 GB of address space) and `timeout`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

use crate::graft::{capture, Run};

/// Address space a graft run may use, in KiB (`ulimit -v`).
const MEMORY_KIB: u32 = 1_000_000;
/// Wall time a graft run may take before `timeout` kills it (exit 124).
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Run graft in `dir` under `ulimit -v` and `timeout`, HOME isolated, with `env` set; the run
/// and the CPU time it used (user + system, from the shell's `times`: unlike wall time it
/// does not grow when the machine is busy). A run killed for time exits 124; one that ran out
/// of memory aborts.
fn bounded(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Run, Duration) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -v {MEMORY_KIB}; timeout {} \"$0\" \"$@\"; rc=$?; times >&2; exit $rc",
            TIME_LIMIT.as_secs()
        ))
        .arg(env!("CARGO_BIN_EXE_graft"))
        .args(args)
        .current_dir(dir)
        .env("HOME", home.path())
        .env_remove("DOCKER_CONFIG")
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("GRAFT_CREDS")
        .env_remove("GRAFT_LOG")
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", "0")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut run = capture(&mut cmd);
    // The last line of stderr is the children's `user system` times, as `0m1.250000s`.
    let times = run
        .stderr
        .trim_end()
        .rsplit_once('\n')
        .map_or("", |(_, l)| l);
    let cpu = times
        .split_whitespace()
        .map(|t| {
            let (m, s) = t.trim_end_matches('s').split_once('m').unwrap();
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        })
        .sum::<f64>();
    let keep = run.stderr.trim_end().rsplitn(3, '\n').nth(2).unwrap_or("");
    run.stderr = if keep.is_empty() {
        String::new()
    } else {
        format!("{keep}\n")
    };
    (run, Duration::from_secs_f64(cpu))
}

/// [`bounded`], asserting the exit code and that it used little CPU time (seconds where a
/// hostile input took minutes or forever).
fn refused(dir: &Path, args: &[&str], env: &[(&str, &str)], code: i32) -> Run {
    let (run, cpu) = bounded(dir, args, env);
    let run = run.fails(code);
    assert!(
        cpu < Duration::from_secs(20),
        "{args:?} used {cpu:?} of CPU"
    );
    run
}

/// A valid library (one manifest, one layer `c`) with `files` added or replaced.
fn library(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base = [
        ("graft.yaml", "repo: oci:out\n"),
        (
            "manifests/m.yaml",
            "name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\n",
        ),
        ("layers/c/layer.yaml", "{}\n"),
    ];
    for (path, content) in base.iter().chain(files) {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
    dir
}

/// Whether `dir` holds anything but the names in `expected`.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn yaml_alias_bombs_and_deep_nesting_are_refused_at_their_line() {
    // Nine levels of nine aliases: 9^9 nodes if expanded (it aborted, out of memory).
    let mut bomb = String::from("name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\nlabels:\n  a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let lib = library(&[("manifests/m.yaml", &bomb)]);
    let run = refused(lib.path(), &["validate"], &[], 1);
    assert_eq!(
        run.stdout,
        "manifests/m.yaml:12:12: (root): aliases repeat more than 100000 nodes or 4 MiB of text in this file (an alias bomb?); write the values out or use fewer aliases\n",
        "{}",
        run.stderr
    );
    // Any other command stops on the library's problems with exit 2, before doing anything.
    let run = refused(lib.path(), &["plan"], &[], 2);
    assert!(
        run.stderr.contains("manifests/m.yaml:12:12"),
        "{}",
        run.stderr
    );
    assert_eq!(entries(lib.path()), ["graft.yaml", "layers", "manifests"]);

    // 100,000 nested block sequences on one line (the parser's recursion overflowed the
    // stack) and 100,000 nested flow sequences.
    for nested in ["- ".repeat(100_000) + "x\n", "[".repeat(100_000)] {
        let lib = library(&[("layers/c/layer.yaml", &nested)]);
        let run = refused(lib.path(), &["validate"], &[], 1);
        let first = run.stdout.lines().next().unwrap_or_default();
        assert!(first.starts_with("layers/c/layer.yaml:1:"), "{}", run.all());
        assert!(
            first.ends_with(": (root): lists and mappings are nested more than 64 deep"),
            "{}",
            run.all()
        );
    }
}

#[test]
fn duplicate_keys_in_a_huge_mapping_are_found_quickly() {
    // 160,000 labels and one repeated at the end: the duplicate check compared every key
    // with every earlier one (33 s in a release build, minutes in this debug build, killed
    // at 60 s); with one lookup each the whole validate takes about 2 s of CPU here. The
    // 20 s CPU bound of `refused` is generous, not a benchmark; the unit tests of
    // `library::yaml` time the parse alone.
    let mut m =
        String::from("name: m\nversion: 1.0\nscience:\n  image: oci:sci:1.0\ncompat: c\nlabels:\n");
    for i in 0..160_000 {
        m.push_str(&format!("  k{i}: v\n"));
    }
    m.push_str("  k7: again\n");
    let lib = library(&[("manifests/m.yaml", &m)]);
    let run = refused(lib.path(), &["validate"], &[], 1);
    assert_eq!(
        run.stdout,
        "manifests/m.yaml:160007:3: (root): duplicate key \"k7\" (first defined at line 14)\n"
    );

    // 160,000 unknown fields: the first 100 are listed, each found without a scan per field.
    let mut layer = String::new();
    for i in 0..160_000 {
        layer.push_str(&format!("k{i}: v\n"));
    }
    let lib = library(&[("layers/c/layer.yaml", &layer)]);
    let run = refused(lib.path(), &["validate"], &[], 1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 101, "{}", run.stdout);
    assert_eq!(
        lines[0],
        "layers/c/layer.yaml:1:1: (root): more than 100 problems against the schema; the rest are not listed"
    );
    assert!(
        lines[1].starts_with("layers/c/layer.yaml:1:1: k0: unknown field"),
        "{}",
        lines[1]
    );
}

#[test]
fn the_library_loader_reads_nothing_outside_the_library() {
    let secret = "GRAFT_TEST_SECRET=do-not-print-me";
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("layer/files/.ssh")).unwrap();
    std::fs::write(outside.path().join("layer/layer.yaml"), "{}\n").unwrap();
    std::fs::write(
        outside.path().join("layer/files/.ssh/id_ed25519"),
        "PRIVATE",
    )
    .unwrap();
    std::fs::write(outside.path().join("m.yaml"), "name: x\n").unwrap();

    // layer.yaml -> /proc/self/environ: the environment was echoed in a schema error.
    let lib = library(&[]);
    let layer_yaml = lib.path().join("layers/c/layer.yaml");
    std::fs::remove_file(&layer_yaml).unwrap();
    symlink("/proc/self/environ", &layer_yaml).unwrap();
    let env = [("GRAFT_TEST_SECRET", "do-not-print-me")];
    let run = refused(lib.path(), &["validate"], &env, 1);
    assert!(
        run.stdout.starts_with("layers/c/layer.yaml:1:1: (root): layers/c/layer.yaml leads outside the library through a symlink; graft reads only files inside the library\n"),
        "{}",
        run.stdout
    );
    assert!(!run.all().contains("do-not-print-me"), "{}", run.all());
    let run = refused(
        lib.path(),
        &["layer", "build", "c", "--file", "out.tar"],
        &env,
        2,
    );
    assert!(
        run.stderr.contains("layers/c/layer.yaml:1:1"),
        "{}",
        run.stderr
    );
    assert!(!run.all().contains(secret) && !run.all().contains("do-not-print-me"));
    assert!(!lib.path().join("out.tar").exists());

    // A layer directory symlinked outside: its files (an ssh key) went into the layer.
    let lib = library(&[]);
    std::fs::remove_dir_all(lib.path().join("layers/c")).unwrap();
    symlink(outside.path().join("layer"), lib.path().join("layers/c")).unwrap();
    let run = refused(lib.path(), &["validate"], &[], 1);
    assert!(
        run.stdout.contains(
            "layers/c/layer.yaml:1:1: (root): layers/c leads outside the library through a symlink"
        ),
        "{}",
        run.stdout
    );
    let run = refused(
        lib.path(),
        &["layer", "build", "c", "--file", "out.tar"],
        &[],
        2,
    );
    assert!(
        run.stderr.contains("layers/c leads outside"),
        "{}",
        run.stderr
    );
    assert!(!lib.path().join("out.tar").exists());

    // A manifest, and the whole layers/ directory, symlinked outside.
    let lib = library(&[]);
    symlink(
        outside.path().join("m.yaml"),
        lib.path().join("manifests/n.yaml"),
    )
    .unwrap();
    std::fs::remove_dir_all(lib.path().join("layers")).unwrap();
    symlink(outside.path(), lib.path().join("layers")).unwrap();
    let run = refused(lib.path(), &["validate"], &[], 1);
    assert!(
        run.stdout
            .contains("layers:1:1: (root): layers leads outside the library through a symlink")
            && run.stdout.contains(
                "manifests/n.yaml:1:1: (root): manifests/n.yaml leads outside the library"
            ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("name: x"), "{}", run.stdout);

    // A fifo where a manifest should be: refused, not waited on.
    let lib = library(&[]);
    let fifo = lib.path().join("manifests/pipe.yaml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let run = refused(lib.path(), &["validate"], &[], 1);
    assert!(
        run.stdout.contains(
            "manifests/pipe.yaml:1:1: (root): is a fifo; a library file must be a regular file"
        ),
        "{}",
        run.stdout
    );

    // A symlink inside a library symlinked within it is fine, and a symlink in files/ is
    // content: it stays a link in the layer.
    let lib = library(&[("common/c/layer.yaml", "{}\n")]);
    std::fs::remove_dir_all(lib.path().join("layers/c")).unwrap();
    symlink("../common/c", lib.path().join("layers/c")).unwrap();
    std::fs::create_dir_all(lib.path().join("common/c/files")).unwrap();
    symlink("/etc/passwd", lib.path().join("common/c/files/passwd")).unwrap();
    bounded(lib.path(), &["validate"], &[]).0.ok();
    bounded(
        lib.path(),
        &["layer", "build", "c", "--file", "out.tar"],
        &[],
    )
    .0
    .ok();
    let listing = Command::new("tar")
        .args(["-tvzf", "out.tar"])
        .current_dir(lib.path())
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("passwd -> /etc/passwd"), "{listing}");
}

#[test]
fn a_symlink_escaping_through_another_in_tree_link_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("d")).unwrap();
    symlink("..", tree.join("d/up")).unwrap();
    // Lexically inside (d/up/d/up then two levels up); through d/up -> .. it is two levels
    // above the tree: extracted, x was /etc/passwd.
    symlink("d/up/d/up/../../etc/passwd", tree.join("x")).unwrap();
    let run = refused(
        work.path(),
        &["layer", "build", "tree", "--file", "out.tar"],
        &[],
        2,
    );
    assert_eq!(
        run.stderr,
        format!(
            "error: tree/x: the symlink target \"d/up/d/up/../../etc/passwd\" points outside the tree (through the symlink /d/up in the tree)\n",
        )
    );
    assert_eq!(entries(work.path()), ["tree"]);

    // The same across the trees of a compat layer and its include.
    let lib = library(&[
        ("layers/c/layer.yaml", "includes: [base]\n"),
        ("layers/base/layer.yaml", "{}\n"),
    ]);
    std::fs::create_dir_all(lib.path().join("layers/base/files/d")).unwrap();
    symlink("..", lib.path().join("layers/base/files/d/up")).unwrap();
    std::fs::create_dir_all(lib.path().join("layers/c/files")).unwrap();
    symlink("d/up/../etc/shadow", lib.path().join("layers/c/files/y")).unwrap();
    let run = refused(
        lib.path(),
        &["layer", "build", "c", "--file", "out.tar"],
        &[],
        2,
    );
    assert!(
        run.stderr.contains("layers/c/files/y: the symlink target \"d/up/../etc/shadow\" points outside the tree (through the symlink /d/up in the tree)"),
        "{}",
        run.stderr
    );
    assert!(!lib.path().join("out.tar").exists());
}

#[test]
fn whiteout_names_in_remove_are_refused() {
    let lib = library(&[("layers/c/layer.yaml", "remove: [\"/.wh..opq\"]\n")]);
    let run = refused(lib.path(), &["validate"], &[], 1);
    assert_eq!(
        run.stdout,
        "layers/c/layer.yaml:1:10: remove[0]: \"/.wh..opq\": names starting with \".wh.\" are reserved for whiteouts; name the path to remove itself\n"
    );
    let run = refused(
        lib.path(),
        &["layer", "build", "c", "--file", "out.tar"],
        &[],
        2,
    );
    assert!(
        run.stderr.contains("layers/c/layer.yaml:1:10: remove[0]"),
        "{}",
        run.stderr
    );
    assert!(!lib.path().join("out.tar").exists());
}

/// A cosign key pair made by graft in `dir`: (private key path, public key path).
fn keypair(dir: &Path) -> (PathBuf, PathBuf) {
    bounded(
        dir,
        &["generate-key-pair", "--output-key-prefix", "cosign"],
        &[("COSIGN_PASSWORD", "pw")],
    )
    .0
    .ok();
    (dir.join("cosign.key"), dir.join("cosign.pub"))
}

/// A copy of the sample science layout in `dir/sci`, and its index.json.
fn science(dir: &Path) -> (String, Vec<u8>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/science/astro-base");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(&src)
        .arg(dir.join("sci"))
        .status()
        .unwrap()
        .success());
    (
        "oci:sci:1.0".to_string(),
        std::fs::read(dir.join("sci/index.json")).unwrap(),
    )
}

#[test]
fn cosign_keys_asking_for_huge_scrypt_costs_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let (key, _) = keypair(work.path());
    let (image, index) = science(work.path());
    let pem = std::fs::read_to_string(&key).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let doc = String::from_utf8(B64.decode(body).unwrap()).unwrap();
    assert!(doc.contains(r#""params":{"N":65536,"r":8,"p":1}"#), "{doc}");
    // N = 2^30 wanted 128 GiB and aborted; p = 2^20 ran for hours.
    for (params, shown) in [
        (
            r#""params":{"N":1073741824,"r":8,"p":1}"#,
            "N=1073741824 r=8 p=1",
        ),
        (
            r#""params":{"N":65536,"r":8,"p":1048576}"#,
            "N=65536 r=8 p=1048576",
        ),
        (r#""params":{"N":65536,"r":64,"p":1}"#, "N=65536 r=64 p=1"),
    ] {
        let hostile = doc.replace(r#""params":{"N":65536,"r":8,"p":1}"#, params);
        let pem = format!(
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            B64.encode(hostile)
        );
        std::fs::write(work.path().join("hostile.key"), pem).unwrap();
        let run = refused(
            work.path(),
            &["sign", "--key", "hostile.key", &image],
            &[("COSIGN_PASSWORD", "pw")],
            2,
        );
        assert_eq!(
            run.stderr,
            format!("error: key hostile.key: unsupported scrypt parameters {shown}: graft accepts N a power of two up to 2^17, r=8 and p=1 (cosign writes N=32768 or 65536)\n")
        );
        assert_eq!(
            std::fs::read(work.path().join("sci/index.json")).unwrap(),
            index
        );
    }
    // The key graft wrote still signs.
    bounded(
        work.path(),
        &["sign", "--key", "cosign.key", &image],
        &[("COSIGN_PASSWORD", "pw")],
    )
    .0
    .ok();
}

#[test]
fn public_keys_of_other_types_are_named_as_what_they_are() {
    let work = tempfile::tempdir().unwrap();
    let (image, _) = science(work.path());
    for (name, genkey, kind) in [
        ("ed25519", "openssl genpkey -algorithm ed25519", "Ed25519"),
        (
            "p384",
            "openssl ecparam -name secp384r1 -genkey -noout",
            "ECDSA P-384",
        ),
        (
            "k256",
            "openssl ecparam -name secp256k1 -genkey -noout",
            "ECDSA secp256k1",
        ),
        (
            "rsa",
            "openssl genpkey -algorithm rsa -pkeyopt rsa_keygen_bits:1024",
            "RSA",
        ),
    ] {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("{genkey} | openssl pkey -pubout -out {name}.pub"))
            .current_dir(work.path())
            .status()
            .unwrap();
        assert!(status.success(), "{name}");
        let file = format!("{name}.pub");
        let run = refused(work.path(), &["verify", "--key", &file, &image], &[], 2);
        assert_eq!(
            run.stderr,
            format!("error: key {file}: unsupported key type {kind}: graft supports ECDSA P-256 keys (cosign's default)\n")
        );
        assert!(!run.stderr.contains("1.2.840.10045.3.1.7"));
    }
}

#[test]
fn missing_key_and_sync_files_and_invalid_libraries_are_bad_input() {
    let work = tempfile::tempdir().unwrap();
    let (image, index) = science(work.path());
    for args in [
        vec!["verify", "--key", "missing.pub", &image],
        vec!["sign", "--key", "missing.key", &image],
    ] {
        let run = refused(work.path(), &args, &[("COSIGN_PASSWORD", "pw")], 2);
        assert!(
            run.stderr.starts_with(&format!(
                "error: key {}: cannot read the key file: No such file or directory",
                args[2]
            )),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        std::fs::read(work.path().join("sci/index.json")).unwrap(),
        index
    );
    let run = refused(work.path(), &["mirror", "--config", "missing.yaml"], &[], 2);
    assert_eq!(
        run.stderr,
        "error: cannot read the sync file missing.yaml: No such file or directory (os error 2)\n"
    );

    // A library problem: validate says "problems found" (1); every other command refuses
    // the input (2) and writes nothing.
    let lib = library(&[("layers/c/layer.yaml", "remove: [etc]\n")]);
    refused(lib.path(), &["validate"], &[], 1);
    for args in [
        vec!["plan"],
        vec!["layer", "build", "c", "--file", "out.tar"],
        vec!["refresh", "--repo", "oci:out"],
    ] {
        let run = refused(lib.path(), &args, &[], 2);
        assert!(
            run.stderr.contains("layers/c/layer.yaml:1:10: remove[0]"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(entries(lib.path()), ["graft.yaml", "layers", "manifests"]);
}

#[test]
fn invalid_sync_files_unknown_layers_and_missing_libraries_are_bad_input() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let out = dir.join("out");
    let out_ref = format!("oci:{}", out.display());
    for (content, message) in [
        (
            format!("destination: {out_ref}\nsource: []\n"),
            "unknown field `source`, expected one of `destination`, `jobs`, `with_attachments`, \
             `sources` at line 2 column 1",
        ),
        (
            format!("destination: {out_ref}\nsources:\n  - repository: nowhere\n"),
            "sources[0].repository: invalid reference \"nowhere\"",
        ),
        (
            "destination: 42x\nsources: []\n".to_string(),
            "destination: invalid reference \"42x\"",
        ),
    ] {
        std::fs::write(dir.join("sync.yaml"), content).unwrap();
        let run = refused(dir, &["mirror", "--config", "sync.yaml"], &[], 2);
        assert!(
            run.stderr
                .starts_with(&format!("error: invalid sync file sync.yaml: {message}")),
            "{}",
            run.stderr
        );
    }

    let lib = library(&[]);
    for (args, message) in [
        (
            vec!["layer", "build", "nosuch", "--file", "out.tar"],
            format!(
                "error: invalid layer name \"nosuch\": there is no {}/layers/nosuch/layer.yaml \
                 (layers there: c)\n",
                lib.path().display()
            ),
        ),
        (
            vec!["layer", "build", "no/such", "--file", "out.tar"],
            "error: invalid layer \"no/such\": not a directory, and a layer NAME has no '/': \
             pass the NAME of a directory under ./layers\n"
                .to_string(),
        ),
        (
            vec!["validate", "--library", "missing"],
            "error: invalid library missing: no such directory\n".to_string(),
        ),
        (
            vec!["validate", "--library", "graft.yaml"],
            "error: invalid library graft.yaml: not a directory\n".to_string(),
        ),
        (
            vec!["plan", "--library", "missing"],
            "error: invalid library missing: no such directory\n".to_string(),
        ),
    ] {
        let run = refused(lib.path(), &args, &[], 2);
        assert_eq!(run.stderr, message, "{args:?}");
    }
    // Nothing written anywhere.
    assert_eq!(entries(lib.path()), ["graft.yaml", "layers", "manifests"]);
    assert!(!out.exists());
    assert_eq!(entries(dir), ["sync.yaml"]);
}

#[test]
fn a_layer_file_linked_out_of_the_tree_is_refused_naming_it() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("id_ed25519"), "PRIVATE-KEY-BYTES").unwrap();
    let lib = library(&[("layers/c/files/etc/motd", "hello\n")]);
    let link = lib.path().join("layers/c/files/etc/key");
    // Relative, through as many `..` as it takes to leave the library.
    let up = "../".repeat(lib.path().components().count() + 4);
    let target = format!(
        "{up}{}",
        outside
            .path()
            .join("id_ed25519")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    symlink(&target, &link).unwrap();
    let run = refused(
        lib.path(),
        &["layer", "build", "c", "--file", "out.tar"],
        &[],
        2,
    );
    assert_eq!(
        run.stderr,
        format!(
            "error: {}: the symlink target {target:?} points outside the tree\n",
            std::path::absolute(&link).unwrap().display()
        )
    );
    assert!(!run.all().contains("PRIVATE"));
    assert_eq!(entries(lib.path()), ["graft.yaml", "layers", "manifests"]);
}
