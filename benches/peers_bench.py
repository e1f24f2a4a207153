#!/usr/bin/env python3
"""graft side by side with the peer tools our users run (crane, regctl, skopeo, cosign), one run,
ratios printed. The peers are the pinned versions of scripts/tools.env, found where
scripts/install-tools.sh puts them ($(go env GOPATH)/graft-tools/NAME-VERSION/bin/BIN); a missing
one stops the run.

Jobs (--only picks some, comma-separated):
  copy    registry -> registry of a two-platform index (2 x --platform-mb): crane copy, regctl image
          copy, skopeo copy --all, graft copy, and the registries' floor: the same blobs streamed by
          parallel `curl` GET from A piped into `curl` PUT to B (monolithic upload: POST for the
          Location, then PUT ?digest=), then the manifests. Ratios to the floor; target: graft
          fastest and within 1.3x of the floor.
  local   within one registry (cross-repo mount), export to an oci: layout, import from one:
          crane copy / crane pull --format=oci / crane push, regctl image copy (ocidir://),
          skopeo copy --all, graft copy.
  sign    --images two-platform images on a registry stored on tmpfs: one `cosign sign --key
          --tlog-upload=false -y --recursive` process per image (a CI script's loop) against one
          `graft sign --recursive` of them all (both sign the index and both platforms). Target
          >= 10x.
  append  one --layer-mb layer onto a two-platform index: graft append (the index, and one
          platform), crane append per platform (it writes one platform; `crane index append` joins
          two), regctl image mod --layer-add (the index).

    python3 benches/peers_bench.py --quick          # small sizes, one round: a smoke run
    python3 benches/peers_bench.py                  # 2 x 1 GiB, 3 rounds, 100 images, 64 MiB layer
    python3 benches/peers_bench.py --only copy --platform-mb 512 --rounds 5

GRAFT=PATH uses that binary instead of building target/release/graft; BENCH_TMP=DIR puts the work
files there (the full run needs about 4 x the image size free; the sign registries are on
/dev/shm).
"""

import argparse
import concurrent.futures
import gzip
import json
import os
import statistics
import subprocess
import tarfile
import tempfile
import time

from lib_bench import ROOT, Registry, cleanup, ensure_graft, make_image, run_measured, workdir

PEERS = ["crane", "regctl", "cosign"]


def peer_tools():
    """The pinned peer tools from scripts/tools.env: {name: path}. Exits naming the fix if one
    is missing."""
    pins = {}
    with open(os.path.join(ROOT, "scripts", "tools.env")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, spec = line.split("=", 1)
            pkg, version = spec.rsplit("@", 1)
            pins[name] = (pkg, version)
    gopath = subprocess.run(["go", "env", "GOPATH"], check=True, capture_output=True,
                            text=True).stdout.strip()
    tools = {}
    for name in PEERS:
        if name not in pins:
            raise SystemExit(f"no {name} in scripts/tools.env")
        pkg, version = pins[name]
        path = os.path.join(gopath, "graft-tools", f"{name}-{version}", "bin", pkg.rsplit("/", 1)[-1])
        if not os.access(path, os.X_OK):
            raise SystemExit(f"peer tool {name} {version} is not installed at {path}: "
                             f"run scripts/install-tools.sh")
        tools[name] = path
    for prog in ["skopeo", "curl", "docker-registry", "/usr/bin/time"]:
        if subprocess.run(["sh", "-c", f"command -v {prog}"], capture_output=True).returncode:
            raise SystemExit(f"{prog} is not installed")
    return tools


class Peers:
    """Command lines for each tool against plain-HTTP registries on loopback, with a private
    HOME (no user configuration, caches that start empty)."""

    def __init__(self, tools, graft, home):
        self.t = tools
        self.graft = graft
        self.env = dict(os.environ, HOME=home, SIGSTORE_NO_CACHE="1")
        for k in ["DOCKER_CONFIG", "REGISTRY_AUTH_FILE", "GRAFT_CREDS"]:
            self.env.pop(k, None)
        self.hosts = []

    def plain(self, *regs):
        self.hosts = [r.addr for r in regs]

    def crane(self, *args):
        return [self.t["crane"], "--insecure", *args]

    def regctl(self, *args):
        hosts = []
        for h in self.hosts:
            hosts += ["--host", f"reg={h},tls=disabled"]
        return [self.t["regctl"], *hosts, *args]

    def skopeo(self, *args):
        return ["skopeo", "--insecure-policy", *args]

    def g(self, *args):
        return [self.graft, "-q", "--tls-verify=false", *args]

    def cosign(self, *args):
        return [self.t["cosign"], *args]

    def run(self, argv, env=None):
        """Timed run: (seconds, peak RSS MiB)."""
        return run_measured(argv, env=env or self.env)

    def ok(self, argv, env=None):
        """Untimed run that must succeed; returns stdout."""
        p = subprocess.run(argv, env=env or self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"failed: {' '.join(argv)}\n{p.stdout}{p.stderr}")
        return p.stdout

    def digest(self, ref):
        return self.ok(self.crane("digest", ref)).strip()


def layout_docs(layout):
    """(index digest, [child manifest digests], [blob digests]) of a make_image layout."""
    def blob(d):
        with open(os.path.join(layout, "blobs", "sha256", d.split(":", 1)[1]), "rb") as f:
            return json.load(f)
    with open(os.path.join(layout, "index.json")) as f:
        top = json.load(f)["manifests"][0]["digest"]
    children, blobs = [], []
    for m in blob(top)["manifests"]:
        children.append((m["digest"], m["mediaType"]))
        man = blob(m["digest"])
        blobs.append(man["config"]["digest"])
        blobs += [l["digest"] for l in man["layers"]]
    return top, children, blobs


FLOOR_BLOB = r'''
set -eu -o pipefail
loc=$(curl -sS -f -o /dev/null -D - -X POST "$1" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case "$loc" in http*) ;; *) loc="$2$loc" ;; esac
case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sS -f "$3" | curl -sS -f -o /dev/null -X PUT -H 'Expect:' \
  -H 'Content-Type: application/octet-stream' -T - "$loc${sep}digest=$4"
'''

FLOOR_MANIFEST = r'''
set -eu -o pipefail
curl -sS -f -H "Accept: $3" "$1" | curl -sS -f -o /dev/null -X PUT -H 'Expect:' \
  -H "Content-Type: $3" --data-binary @- "$2"
'''


def floor_copy(src, dst, repo, tag, layout, jobs):
    """The registries' floor: every blob streamed GET A | PUT B by curl, `jobs` at a time, then
    the child manifests, then the index by tag. Returns seconds."""
    top, children, blobs = layout_docs(layout)
    a, b = f"http://{src.addr}", f"http://{dst.addr}"

    def sh(script, *args):
        p = subprocess.run(["bash", "-c", script, "floor", *args], capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"curl floor failed ({args}):\n{p.stderr}")

    def blob(d):
        sh(FLOOR_BLOB, f"{b}/v2/{repo}/blobs/uploads/", b, f"{a}/v2/{repo}/blobs/{d}", d)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        list(pool.map(blob, sorted(set(blobs))))
        list(pool.map(lambda c: sh(FLOOR_MANIFEST, f"{a}/v2/{repo}/manifests/{c[0]}",
                                   f"{b}/v2/{repo}/manifests/{c[0]}", c[1]), children))
    sh(FLOOR_MANIFEST, f"{a}/v2/{repo}/manifests/{tag}", f"{b}/v2/{repo}/manifests/{tag}",
       "application/vnd.oci.image.index.v1+json")
    return time.monotonic() - start


class Table:
    """Times per tool over rounds; prints medians and ratios."""

    def __init__(self, title):
        self.title = title
        self.t = {}
        self.rss = {}
        self.order = []

    def add(self, who, seconds, rss=None):
        if who not in self.t:
            self.order.append(who)
        self.t.setdefault(who, []).append(seconds)
        if rss is not None:
            self.rss[who] = max(self.rss.get(who, 0), rss)
        print(f"  {self.title}: {who:40} {seconds:8.3f} s", flush=True)

    def med(self, who):
        return statistics.median(self.t[who])

    def show(self, ref, note=""):
        n = len(next(iter(self.t.values())))
        print(f"\n== {self.title} (median of {n}; ratio = time / {ref}){note}")
        r = self.med(ref)
        for who in sorted(self.order, key=self.med):
            rss = f"{self.rss[who]:7.1f} MiB" if who in self.rss else " " * 11
            print(f"  {who:40} {self.med(who):8.3f} s  {self.med(who) / r:6.2f}x  peak RSS {rss}")


def job_copy(a, p, wd, src, layout, regs):
    t = Table("copy registry -> registry")
    ref = f"{src.addr}/bench/science:1.0"
    want = p.digest(ref)
    tools = ["floor", "graft", "crane", "regctl", "skopeo"]
    for r in range(a.rounds):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        for who in order:
            # A fresh destination each time: nothing present, and no client-side cache of where
            # blobs were seen (skopeo keeps one per registry host) helps the next run.
            dst = Registry(wd, f"copy-{who}-{r}")
            regs.append(dst)
            p.plain(src, dst)
            out = f"{dst.addr}/bench/science:1.0"
            rss = None
            if who == "floor":
                s = floor_copy(src, dst, "bench/science", "1.0", layout, a.jobs)
            elif who == "graft":
                s, rss = p.run(p.g("copy", "--jobs", str(a.jobs), f"docker://{ref}", f"docker://{out}"))
            elif who == "crane":
                s, rss = p.run(p.crane("copy", ref, out))
            elif who == "regctl":
                s, rss = p.run(p.regctl("image", "copy", ref, out))
            else:
                s, rss = p.run(p.skopeo("copy", "--all", "--preserve-digests", "-q", "--src-tls-verify=false",
                                        "--dest-tls-verify=false", f"docker://{ref}", f"docker://{out}"))
            got = p.digest(out)
            if got != want:
                raise SystemExit(f"{who}: copied {got}, want {want}")
            t.add(f"{who}" if who != "floor" else "floor (curl GET | curl PUT)", s, rss)
            dst.stop()
            regs.remove(dst)
            cleanup(dst.dir)
    t.show("floor (curl GET | curl PUT)", f"; jobs {a.jobs} for graft and the floor")
    fastest = min(t.order, key=t.med)
    g, floor = t.med("graft"), t.med("floor (curl GET | curl PUT)")
    peer = min(["crane", "regctl", "skopeo"], key=t.med)
    print(f"  fastest peer ({peer}) / graft = {t.med(peer) / g:.2f} (> 1: graft faster); "
          f"graft / floor = {g / floor:.2f} (target <= 1.3: {'met' if g / floor <= 1.3 else 'MISSED'}); "
          f"fastest overall: {fastest}")


def job_local(a, p, wd, src, regs):
    ref = f"{src.addr}/bench/science:1.0"
    want = p.digest(ref)
    mount, export, imp = Table("copy within one registry (mount)"), Table("export to oci:"), Table("import from oci:")
    tools = ["graft", "crane", "regctl", "skopeo"]
    # One layout every tool reads (graft wrote it; crane, regctl and skopeo read it back in the
    # interop tests).
    shared = f"{wd}/shared-layout"
    p.plain(src)
    p.ok(p.g("copy", f"docker://{ref}", f"oci:{shared}:1.0"))
    for r in range(a.rounds):
        order = tools[r % len(tools):] + tools[:r % len(tools)]
        for who in order:
            p.plain(src)
            out = f"{src.addr}/mount/{who}-{r}:1.0"
            if who == "graft":
                s, rss = p.run(p.g("copy", f"docker://{ref}", f"docker://{out}"))
            elif who == "crane":
                s, rss = p.run(p.crane("copy", ref, out))
            elif who == "regctl":
                s, rss = p.run(p.regctl("image", "copy", ref, out))
            else:
                s, rss = p.run(p.skopeo("copy", "--all", "--preserve-digests", "-q", "--src-tls-verify=false",
                                        "--dest-tls-verify=false", f"docker://{ref}", f"docker://{out}"))
            if p.digest(out) != want:
                raise SystemExit(f"{who}: mount copy has the wrong digest")
            mount.add(who, s, rss)

            d = f"{wd}/export-{who}-{r}"
            if who == "graft":
                s, rss = p.run(p.g("copy", f"docker://{ref}", f"oci:{d}:1.0"))
            elif who == "crane":
                s, rss = p.run(p.crane("pull", "--format=oci", ref, d))
            elif who == "regctl":
                s, rss = p.run(p.regctl("image", "copy", ref, f"ocidir://{d}:1.0"))
            else:
                s, rss = p.run(p.skopeo("copy", "--all", "--preserve-digests", "-q", "--src-tls-verify=false",
                                        f"docker://{ref}", f"oci:{d}:1.0"))
            with open(f"{d}/index.json") as f:
                if want not in f.read():
                    raise SystemExit(f"{who}: the exported layout does not hold {want}")
            export.add(who, s, rss)
            cleanup(d)

            dst = Registry(wd, f"import-{who}-{r}")
            regs.append(dst)
            p.plain(dst)
            out = f"{dst.addr}/bench/science:1.0"
            if who == "graft":
                s, rss = p.run(p.g("copy", f"oci:{shared}:1.0", f"docker://{out}"))
            elif who == "crane":
                s, rss = p.run(p.crane("push", shared, out))
            elif who == "regctl":
                s, rss = p.run(p.regctl("image", "copy", f"ocidir://{shared}:1.0", out))
            else:
                s, rss = p.run(p.skopeo("copy", "--all", "--preserve-digests", "-q", "--dest-tls-verify=false",
                                        f"oci:{shared}:1.0", f"docker://{out}"))
            if p.digest(out) != want:
                raise SystemExit(f"{who}: import has the wrong digest")
            imp.add(who, s, rss)
            dst.stop()
            regs.remove(dst)
            cleanup(dst.dir)
    for t in (mount, export, imp):
        t.show("graft")


def job_sign(a, p, wd, regs):
    shm = tempfile.mkdtemp(prefix="graft-bench-sign-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    env = dict(p.env, COSIGN_PASSWORD="bench-password")
    t = Table(f"sign {a.images} two-platform images (index + 2 platforms each)")
    try:
        keys = f"{wd}/keys"
        os.makedirs(keys)
        p.ok(p.g("generate-key-pair", "--output-key-prefix", f"{keys}/graft"), env=env)
        subprocess.run(p.cosign("generate-key-pair"), cwd=keys, env=env, check=True,
                       capture_output=True)
        layouts = []
        for i in range(a.images):
            layout = f"{wd}/sign-img{i}"
            make_image(layout, 8 << 10, layers_per_platform=1)
            layouts.append(layout)
        for r in range(a.rounds):
            for who in (["cosign", "graft"] if r % 2 == 0 else ["graft", "cosign"]):
                reg = Registry(shm, f"sign-{who}-{r}")
                regs.append(reg)
                refs = [f"{reg.addr}/bench/img{i}:1.0" for i in range(a.images)]
                for layout, ref in zip(layouts, refs):
                    p.ok(p.g("copy", f"oci:{layout}:1.0", f"docker://{ref}"))
                if who == "cosign":
                    # A CI script's loop: one process per image.
                    start = time.monotonic()
                    for ref in refs:
                        p.ok(p.cosign("sign", "--key", f"{keys}/cosign.key", "--tlog-upload=false",
                                      "-y", "--recursive", ref), env=env)
                    s = time.monotonic() - start
                    t.add("cosign sign (one process per image)", s)
                    p.ok(p.cosign("verify", "--key", f"{keys}/cosign.pub", "--insecure-ignore-tlog=true",
                                  refs[-1]), env=env)
                else:
                    s, rss = p.run(p.g("sign", "--key", f"{keys}/graft.key", "--recursive",
                                       "--jobs", str(a.sign_jobs), *[f"docker://{x}" for x in refs]), env=env)
                    t.add("graft sign --recursive (one process)", s, rss)
                    p.ok(p.g("verify", "--key", f"{keys}/graft.pub", "--recursive", f"docker://{refs[-1]}"))
                reg.stop()
                regs.remove(reg)
                cleanup(reg.dir)
        t.show("graft sign --recursive (one process)", "; registry storage on tmpfs")
        ratio = t.med("cosign sign (one process per image)") / t.med("graft sign --recursive (one process)")
        print(f"  graft is {ratio:.1f}x faster than the cosign loop (target >= 10x: "
              f"{'met' if ratio >= 10 else 'MISSED'})")
    finally:
        cleanup(shm)


def random_layer(d, name, size):
    """A tar with one file of `size` random bytes, and its gzip (level 1: the bytes do not
    compress anyway). Returns (tar, tar.gz)."""
    os.makedirs(d, exist_ok=True)
    raw = f"{d}/{name}.bin"
    with open(raw, "wb") as f:
        left = size
        while left > 0:
            f.write(os.urandom(min(left, 1 << 20)))
            left -= min(left, 1 << 20)
    tar = f"{d}/{name}.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tf.gettarinfo(raw, arcname=f"opt/{name}.bin")
        info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
        with open(raw, "rb") as f:
            tf.addfile(info, f)
    os.remove(raw)
    with open(tar, "rb") as fi, gzip.GzipFile(f"{tar}.gz", "wb", compresslevel=1, mtime=0) as fo:
        while True:
            b = fi.read(1 << 20)
            if not b:
                break
            fo.write(b)
    return tar, f"{tar}.gz"


def job_append(a, p, wd, src):
    base = f"{src.addr}/bench/science:1.0"
    p.plain(src)
    t = Table(f"append one {a.layer_mb} MiB layer")
    kinds = ["graft", "graft-amd64", "crane-amd64", "crane-both", "regctl"]
    for r in range(a.rounds):
        order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
        for who in order:
            # A new random layer every run: no tool finds its layer already in the registry.
            tar, tgz = random_layer(f"{wd}/layers", f"{who}-{r}", a.layer_mb << 20)
            out = f"{src.addr}/append/{who}-{r}"
            rss = None
            if who == "graft":
                s, rss = p.run(p.g("append", "--base", f"docker://{base}", "--layer", tgz, f"docker://{out}:1"))
                label = "graft append (index, 2 platforms)"
            elif who == "graft-amd64":
                s, rss = p.run(p.g("append", "--platform", "linux/amd64", "--base", f"docker://{base}",
                                   "--layer", tgz, f"docker://{out}:1"))
                label = "graft append --platform (1 platform)"
            elif who == "crane-amd64":
                s, rss = p.run(p.crane("append", "--platform", "linux/amd64", "-b", base, "-f", tgz,
                                       "-t", f"{out}:1"))
                label = "crane append (1 platform)"
            elif who == "crane-both":
                s1, r1 = p.run(p.crane("append", "--platform", "linux/amd64", "-b", base, "-f", tgz,
                                       "-t", f"{out}:amd64"))
                s2, r2 = p.run(p.crane("append", "--platform", "linux/arm64/v8", "-b", base, "-f", tgz,
                                       "-t", f"{out}:arm64"))
                s3, r3 = p.run(p.crane("index", "append", "-m", f"{out}:amd64", "-m", f"{out}:arm64",
                                       "-t", f"{out}:1"))
                s, rss = s1 + s2 + s3, max(r1, r2, r3)
                label = "crane append x2 + index append"
            else:
                s, rss = p.run(p.regctl("image", "mod", base, "--layer-add", f"tar={tar}",
                                        "--create", f"{out}:1"))
                label = "regctl image mod --layer-add (index)"
            t.add(label, s, rss)
            cleanup(f"{wd}/layers")
    t.show("graft append (index, 2 platforms)",
           "; graft and crane take the .tar.gz as is, regctl takes the .tar and compresses it")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, one round (a smoke run)")
    ap.add_argument("--only", default="copy,local,sign,append")
    ap.add_argument("--platform-mb", type=int, help="layer bytes per platform (default 1024; quick 16)")
    ap.add_argument("--rounds", type=int, help="default 3; quick 1")
    ap.add_argument("--images", type=int, help="images to sign (default 100; quick 10)")
    ap.add_argument("--layer-mb", type=int, help="appended layer (default 64; quick 1)")
    ap.add_argument("--jobs", type=int, default=4, help="graft's and the floor's concurrent blobs")
    ap.add_argument("--sign-jobs", type=int, default=16)
    a = ap.parse_args()
    quick = a.quick
    a.platform_mb = a.platform_mb or (16 if quick else 1024)
    a.rounds = a.rounds or (1 if quick else 3)
    a.images = a.images or (10 if quick else 100)
    a.layer_mb = a.layer_mb or (1 if quick else 64)
    only = set(a.only.split(","))
    unknown = only - {"copy", "local", "sign", "append"}
    if unknown:
        raise SystemExit(f"unknown job(s) {sorted(unknown)}")
    tools = peer_tools()
    graft = ensure_graft()
    wd = workdir()
    home = f"{wd}/home"
    os.makedirs(home)
    p = Peers(tools, graft, home)
    regs = []
    try:
        print(f"peers: {', '.join(f'{k}={v}' for k, v in tools.items())}; graft={graft}")
        print(f"image: two platforms x {a.platform_mb} MiB; {a.rounds} round(s)"
              f"{' (QUICK: a smoke run, not a measurement)' if quick else ''}", flush=True)
        src = None
        if only & {"copy", "local", "append"}:
            layout = f"{wd}/image"
            make_image(layout, 2 * (a.platform_mb << 20))
            src = Registry(wd, "src")
            regs.append(src)
            p.ok(p.g("copy", f"oci:{layout}:1.0", f"docker://{src.addr}/bench/science:1.0"))
        if "copy" in only:
            job_copy(a, p, wd, src, layout, regs)
        if "local" in only:
            job_local(a, p, wd, src, regs)
        if "append" in only:
            job_append(a, p, wd, src)
        if "sign" in only:
            job_sign(a, p, wd, regs)
    finally:
        for r in regs:
            try:
                r.stop()
            except Exception:
                pass
        cleanup(wd)


if __name__ == "__main__":
    main()
