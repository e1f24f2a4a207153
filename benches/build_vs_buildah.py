#!/usr/bin/env python3
"""graft build vs the same two builds run by hand with buildah + skopeo, side by side.

The library has two `build:` images for linux/amd64 (issue 14's test library, made larger):

- `base`: FROM scratch, COPY Debian's static busybox and a data file, RUN busybox --install;
- `child`: FROM the base's tag in the registry, COPY another data file, RUN a step.

Each image has a test (`build.test`) run inside it before anything is tagged.

graft: `graft build --library L` (fresh buildah storage each round, as on a CI runner): it
builds the base, tests it, writes it (blobs, manifest, index, tags), pins the child's base to
the digest just written, builds and tests the child, writes it.

By hand, the least a script does for the same result, with the same builder flags (vfs
storage, chroot isolation, the same timestamp) and fresh storage each round:
`buildah build` the base, `buildah from` + `buildah run` its test, `buildah push` it into an
OCI layout, `skopeo copy --all` the layout to the registry; the same for the child, whose FROM
finds the base in buildah's storage by its name.

graft's overhead (graft/by hand - 1) must stay under 10%: graft does what the script does
plus the pinning pull, the index and the breadcrumbs.

    python3 benches/build_vs_buildah.py [--rounds 3] [--data-mb 64]

Needs docker-registry, skopeo, buildah, busybox-static and /usr/bin/time.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import time

from lib_bench import Registry, cleanup, ensure_graft, run_measured, workdir

BASE_DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY base.bin /data/base.bin
RUN ["/bin/busybox", "--install", "-s", "/bin"]
"""

CHILD_DOCKERFILE = """ARG REGISTRY
FROM ${REGISTRY}/lib/base:1.0
COPY child.bin /data/child.bin
RUN sha256sum /data/child.bin > /data/child.sha256
"""

TEST_BASE = "/bin/busybox test -s /data/base.bin"
TEST_CHILD = "test -s /data/child.sha256"
# Same image time as graft's (SOURCE_DATE_EPOCH below), so the builder does the same work.
EPOCH = "1700000000"


def write(path, text, mode="w"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


def write_library(root, registry, data_mb):
    write(f"{root}/graft.yaml", f"repo: docker://{registry}/lib\ndefault_branch: main\n")
    write(f"{root}/manifests/base.yaml",
          "name: base\nversion: '1.0'\nbuild:\n  path: images/base\n  platforms: [linux/amd64]\n"
          f"  test: {TEST_BASE}\n")
    write(f"{root}/manifests/child.yaml",
          "name: child\nversion: '1.0'\nbuild:\n  path: images/child\n  platforms: [linux/amd64]\n"
          f"  args:\n    REGISTRY: {registry}\n  test: {TEST_CHILD}\n")
    write(f"{root}/images/base/Dockerfile", BASE_DOCKERFILE)
    write(f"{root}/images/child/Dockerfile", CHILD_DOCKERFILE)
    shutil.copy("/bin/busybox", f"{root}/images/base/busybox")
    for name in ["base", "child"]:
        # Incompressible bytes: the builder's copy, commit and push have work to do.
        write(f"{root}/images/{name}/{name}.bin", os.urandom(data_mb << 20), "wb")


def by_hand(wd, lib, registry, rnd):
    """The two builds as a shell script would run them; seconds."""
    env = dict(os.environ, STORAGE_DRIVER="vfs", BUILDAH_ISOLATION="chroot")
    store = ["--root", f"{wd}/hand-root-{rnd}", "--runroot", f"{wd}/hand-run-{rnd}",
             "--storage-driver", "vfs"]

    def run(*argv):
        r = subprocess.run(list(argv), env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"{' '.join(argv)}: {r.stderr}")
        return r.stdout.strip()

    start = time.monotonic()
    for name, test in [("base", TEST_BASE), ("child", TEST_CHILD)]:
        tag = f"{registry}/lib/{name}:1.0" if name == "base" else f"{registry}/hand/{name}:1.0"
        run("buildah", *store, "build", "--isolation", "chroot", "--pull=false", "--tls-verify=false",
            "--platform", "linux/amd64", "--build-arg", f"REGISTRY={registry}",
            "--timestamp", EPOCH, "-t", tag, "-f", f"{lib}/images/{name}/Dockerfile",
            f"{lib}/images/{name}")
        ctr = run("buildah", *store, "from", "--quiet", "--pull=never", tag)
        run("buildah", *store, "run", "--isolation", "chroot", ctr, "--", "sh", "-c", test)
        run("buildah", *store, "rm", ctr)
        layout = f"{wd}/hand-{name}-{rnd}"
        run("buildah", *store, "push", "--quiet", tag, f"oci:{layout}:{name}")
        run("skopeo", "--insecure-policy", "copy", "-q", "--all", "--dest-tls-verify=false",
            f"oci:{layout}:{name}", f"docker://{registry}/hand/{name}:1.0")
    elapsed = time.monotonic() - start
    for d in [f"hand-root-{rnd}", f"hand-run-{rnd}", f"hand-base-{rnd}", f"hand-child-{rnd}"]:
        shutil.rmtree(f"{wd}/{d}", ignore_errors=True)
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-mb", type=int, default=64, help="data file per image")
    a = ap.parse_args()
    for tool in ["buildah", "skopeo", "docker-registry", "/bin/busybox", "/usr/bin/time"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install buildah skopeo docker-registry busybox-static time")
    graft = ensure_graft()
    wd = workdir()
    reg = None
    try:
        reg = Registry(wd, "reg")
        lib = f"{wd}/lib"
        write_library(lib, reg.addr, a.data_mb)
        g, h, rss = [], [], []
        env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
        for r in range(a.rounds):
            # Alternate which goes first: neither always gets a warm page cache.
            order = ["graft", "hand"] if r % 2 == 0 else ["hand", "graft"]
            for who in order:
                if who == "graft":
                    t, m = run_measured([graft, "-q", "--tls-verify=false", "build", "--library", lib,
                                         "--build", str(r), "--commit", "bench", "--branch", "main"],
                                        env=env)
                    g.append(t)
                    rss.append(m)
                else:
                    h.append(by_hand(wd, lib, reg.addr, r))
            print(f"round {r}: graft build {g[-1]:.2f} s, buildah + skopeo by hand {h[-1]:.2f} s",
                  flush=True)
        G, H = statistics.median(g), statistics.median(h)
        print(f"two images (base, child FROM base), linux/amd64, {a.data_mb} MiB of data each; "
              f"{a.rounds} rounds, medians")
        print(f"graft build              : {G:8.2f} s   (peak RSS of graft {max(rss):.1f} MiB)")
        print(f"buildah + skopeo by hand : {H:8.2f} s")
        print(f"graft overhead           : {100 * (G / H - 1):+7.1f} %   (target < 10%)")
    finally:
        if reg:
            reg.stop()
        cleanup(wd)


if __name__ == "__main__":
    main()
