//! Whether this machine can execute another platform's binaries: a `RUN` step of a foreign
//! platform needs a QEMU user-mode emulator registered with the kernel (binfmt_misc). graft
//! checks before building anything, so a multi-platform build does not fail half way.

use std::path::Path;

use crate::oci::Platform;

/// Where the kernel lists binfmt_misc entries.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The platform of this machine (`linux/<arch>` with OCI architecture names), from the
/// compile target: what a builder builds without `--platform`.
pub fn host_platform() -> Platform {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "arm" => "arm",
        other => other,
    };
    Platform {
        architecture: arch.to_string(),
        os: std::env::consts::OS.to_string(),
        os_version: None,
        os_features: None,
        variant: None,
    }
}

/// Whether `p` runs natively on `host` (same OS and architecture; `arm64` also runs `arm`
/// only with an emulator, so that is not assumed).
pub fn is_native(p: &Platform, host: &Platform) -> bool {
    let (os, arch, _) = p.normalized();
    let (hos, harch, _) = host.normalized();
    os == hos && arch == harch
}

/// QEMU's name for an OCI architecture (`qemu-<name>` is the binfmt entry and the emulator).
fn qemu_arch(arch: &str) -> &str {
    match arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "mipsle" => "mipsel",
        other => other,
    }
}

/// Whether `dir` (normally [`BINFMT_DIR`]) has an enabled emulator for `p`: the entry
/// `qemu-<arch>` (binfmt-support's and tonistiigi/binfmt's name), or any entry whose
/// interpreter is a `qemu-<arch>` binary (other installers name entries differently).
pub fn has_emulator(dir: &Path, p: &Platform) -> bool {
    let (_, arch, _) = p.normalized();
    let q = format!("qemu-{}", qemu_arch(&arch));
    let enabled_with = |text: &str| {
        text.lines().next().is_some_and(|l| l.trim() == "enabled")
            && text.lines().any(|l| {
                l.strip_prefix("interpreter ").is_some_and(|i| {
                    let base = i.trim().rsplit('/').next().unwrap_or("");
                    base == q || base.starts_with(&format!("{q}-"))
                })
            })
    };
    // Entries are tiny kernel files; read at most a few KiB of each.
    let read = |path: &Path| -> Option<String> {
        use std::io::Read;
        let mut s = String::new();
        std::fs::File::open(path)
            .ok()?
            .take(8192)
            .read_to_string(&mut s)
            .ok()?;
        Some(s)
    };
    if let Some(text) = read(&dir.join(&q)) {
        if text.lines().next().is_some_and(|l| l.trim() == "enabled") {
            return true;
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .take(1000)
        .filter(|e| !matches!(e.file_name().to_str(), Some("register" | "status")))
        .filter_map(|e| read(&e.path()))
        .any(|t| enabled_with(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn entries_by_name_or_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!has_emulator(dir.path(), &p("linux/arm64")));
        std::fs::write(dir.path().join("register"), "").unwrap();
        std::fs::write(
            dir.path().join("qemu-aarch64"),
            "disabled\ninterpreter /usr/bin/qemu-aarch64-static\n",
        )
        .unwrap();
        assert!(!has_emulator(dir.path(), &p("linux/arm64")));
        std::fs::write(
            dir.path().join("arm64-emu"),
            "enabled\ninterpreter /usr/libexec/qemu-binfmt/qemu-aarch64-static\nflags: F\n",
        )
        .unwrap();
        assert!(has_emulator(dir.path(), &p("linux/arm64")));
        assert!(!has_emulator(dir.path(), &p("linux/s390x")));
        std::fs::write(dir.path().join("qemu-s390x"), "enabled\ninterpreter /x\n").unwrap();
        assert!(has_emulator(dir.path(), &p("linux/s390x")));
        // A missing directory: no emulators.
        assert!(!has_emulator(&dir.path().join("nope"), &p("linux/s390x")));
    }

    #[test]
    fn native() {
        let host = p("linux/amd64");
        assert!(is_native(&p("linux/amd64"), &host));
        assert!(is_native(&p("linux/x86_64"), &host));
        assert!(!is_native(&p("linux/arm64"), &host));
        assert!(!host_platform().architecture.is_empty());
    }
}
