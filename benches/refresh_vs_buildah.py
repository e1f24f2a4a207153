#!/usr/bin/env python3
"""graft refresh vs buildah vs a raw upload of the compat layer, side by side in one run.

A two-platform science image of ~1 GiB per platform sits in a local registry. Each tool puts
the same small compat layer on top of both platforms and pushes the result into another
repository of the same registry:

- graft refresh: mounts the science layers, uploads the compat layer and two configs;
- buildah from/copy/config/commit per platform + buildah manifest create/add/push --all
  (the usual daemonless way; fresh storage each round, as on a CI runner);
- a raw upload of just the compat layer's bytes (POST + PUT), the floor.

Also prints graft's time on a 10x smaller science image (flat in science size).

    python3 benches/refresh_vs_buildah.py [--size-mb 1024] [--rounds 3]

Needs docker-registry, skopeo, buildah and /usr/bin/time (apt-get install buildah time).
"""

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import time

from lib_bench import Registry, cleanup, ensure_graft, make_image, run_measured, workdir


def write_library(root, registry, science_repo, compat_files):
    os.makedirs(f"{root}/manifests", exist_ok=True)
    os.makedirs(f"{root}/layers/compat/files", exist_ok=True)
    with open(f"{root}/graft.yaml", "w") as f:
        f.write(f"repo: docker://{registry}/rel\nlabel_prefix: org.bench\n")
    with open(f"{root}/manifests/sci.yaml", "w") as f:
        f.write(f"name: {science_repo.replace('/', '-')}\nversion: '1.0'\n"
                f"science:\n  image: docker://{registry}/{science_repo}:1.0\n"
                "compat: compat\ntags: ['{version}-{build}']\n")
    with open(f"{root}/layers/compat/layer.yaml", "w") as f:
        f.write("config:\n  env:\n    PLATFORM: bench\n  labels:\n    org.bench.kind: compat\n")
    shutil.copytree(compat_files, f"{root}/layers/compat/files", dirs_exist_ok=True)


def compat_tree(path, mb):
    os.makedirs(f"{path}/usr/local/bin", exist_ok=True)
    os.makedirs(f"{path}/etc/jupyter", exist_ok=True)
    with open(f"{path}/usr/local/bin/start.sh", "w") as f:
        f.write("#!/bin/sh\nexec jupyter lab --ip=0.0.0.0 \"$@\"\n")
    os.chmod(f"{path}/usr/local/bin/start.sh", 0o755)
    with open(f"{path}/etc/jupyter/jupyter_server_config.py", "w") as f:
        f.write("c = get_config()\n")
    # The bulk of a compat layer (wheels, static assets): incompressible bytes.
    os.makedirs(f"{path}/opt/platform", exist_ok=True)
    with open(f"{path}/opt/platform/assets.bin", "wb") as f:
        f.write(os.urandom(mb << 20))


def raw_upload(addr, repo, blob):
    """POST an upload session and PUT the whole blob: the least any tool must do."""
    import hashlib
    data = open(blob, "rb").read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = time.monotonic()
    c = http.client.HTTPConnection(addr)
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    r = c.getresponse()
    r.read()
    loc = r.getheader("Location")
    sep = "&" if "?" in loc else "?"
    path = loc.split(addr, 1)[-1]
    c.request("PUT", f"{path}{sep}digest={digest}", body=data,
              headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    return time.monotonic() - start


def buildah_refresh(wd, addr, science, dest, tree, rnd):
    env = dict(os.environ, STORAGE_DRIVER="vfs", BUILDAH_ISOLATION="chroot")
    root = ["--root", f"{wd}/bh-root-{rnd}", "--runroot", f"{wd}/bh-run-{rnd}"]

    def b(*a):
        r = subprocess.run(["buildah", *root, *a], env=env, capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"buildah {' '.join(a)}: {r.stderr}")
        return r.stdout.strip()

    start = time.monotonic()
    b("manifest", "create", "list")
    for plat in ["linux/amd64", "linux/arm64/v8"]:
        c = b("from", "--tls-verify=false", "--platform", plat, f"docker://{addr}/{science}:1.0")
        b("copy", c, f"{tree}/", "/")
        b("config", "--env", "PLATFORM=bench", "--label", "org.bench.kind=compat", c)
        img = b("commit", c, f"bench-{plat.replace('/', '-')}")
        b("manifest", "add", "list", img)
    b("manifest", "push", "--all", "--tls-verify=false", "list", f"docker://{addr}/{dest}")
    elapsed = time.monotonic() - start
    shutil.rmtree(f"{wd}/bh-root-{rnd}", ignore_errors=True)
    return elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024, help="science size per platform")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compat-mb", type=int, default=16, help="size of the compat layer")
    a = ap.parse_args()
    for tool in ["buildah", "skopeo", "docker-registry"]:
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install buildah skopeo docker-registry time")
    graft = ensure_graft()
    wd = workdir()
    reg = None
    try:
        reg = Registry(wd, "reg")
        for name, mb in [("science", a.size_mb), ("science-small", a.size_mb // 10)]:
            layout = f"{wd}/{name}"
            make_image(layout, 2 * (mb << 20), tar=True)
            subprocess.run(["skopeo", "--insecure-policy", "copy", "-q", "--all", "--dest-tls-verify=false",
                            f"oci:{layout}:1.0", f"docker://{reg.addr}/bench/{name}:1.0"], check=True)
            shutil.rmtree(layout)
        tree = f"{wd}/compat-tree"
        compat_tree(tree, a.compat_mb)
        libs = {}
        for name in ["science", "science-small"]:
            libs[name] = f"{wd}/lib-{name}"
            write_library(libs[name], reg.addr, f"bench/{name}", tree)
        layer = f"{wd}/compat.tar.gz"
        subprocess.run([graft, "-q", "layer", "build", tree, "-f", layer], check=True, stdout=subprocess.DEVNULL)
        g, gs, bh, raw, rss = [], [], [], [], []
        for r in range(a.rounds):
            # A new SOURCE_DATE_EPOCH each round: new compat bytes and configs, a real refresh.
            env = dict(os.environ, SOURCE_DATE_EPOCH=str(1700000000 + r))
            for name, out in [("science", g), ("science-small", gs)]:
                t, m = run_measured([graft, "-q", "--tls-verify=false", "refresh", "--library", libs[name],
                                     "--build", str(r), "--commit", "bench"], env=env)
                out.append(t)
                if name == "science":
                    rss.append(m)
            raw.append(raw_upload(reg.addr, f"raw/compat{r}", layer))
            if r == 0 or a.rounds <= 3:
                bh.append(buildah_refresh(wd, reg.addr, "bench/science", f"buildah/science:{r}", tree, r))
            print(f"round {r}: graft {g[-1]:.2f} s, graft (10x smaller) {gs[-1]:.2f} s, "
                  f"buildah {bh[-1]:.2f} s, raw compat upload {raw[-1]:.3f} s", flush=True)
        G, GS, B, R = (statistics.median(x) for x in (g, gs, bh, raw))
        print(f"science image: 2 platforms x {a.size_mb} MiB; compat layer {os.path.getsize(layer)} bytes; "
              f"{a.rounds} rounds, medians")
        print(f"graft refresh             : {G:8.3f} s   (peak RSS {max(rss):.1f} MiB)")
        print(f"graft refresh, 10x smaller: {GS:8.3f} s   (ratio big/small {G / GS:.2f}: 1.0 = flat in science size)")
        print(f"buildah                   : {B:8.3f} s   (buildah/graft {B / G:.1f}x; target >= 10x)")
        print(f"raw compat upload         : {R:8.3f} s   (graft/raw {G / R:.1f}x; target <= 2x)")
    finally:
        if reg:
            reg.stop()
        cleanup(wd)


if __name__ == "__main__":
    main()
