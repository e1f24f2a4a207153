#!/usr/bin/env python3
"""The library lifecycle at scale (issue 13): a generated library of --images images (default
200) on one real registry, refreshed once, then:

  status      `graft status` of the whole library after an unrelated commit
  no-change   `graft refresh` after that commit: every image up to date, nothing written
  one-layer   `graft refresh` after a change to one shared layer: only its dependents written

Targets: status and the no-change refresh each under 2 s of wall time on a 2-core machine; the
one-layer refresh writes exactly the dependents of that layer. Requests per image come from the
registry's access log (one line per request), split by method.

The library: --science two-platform science images (small random layers) pushed to the
registry; one `platform-base` layer; --groups group layers including it, each one the compat
layer of images/groups images. The one-layer change edits one group layer's file.

    python3 benches/lifecycle_bench.py            # 200 images, 10 science images, 20 groups
    python3 benches/lifecycle_bench.py --images 50 --rounds 1

GRAFT=PATH uses that binary instead of building target/release/graft.
"""

import argparse
import json
import os
import statistics
import subprocess
import time
import urllib.request

from lib_bench import cleanup, ensure_graft, free_port, make_image, workdir


class LoggedRegistry:
    """A real docker-registry on 127.0.0.1 with its access log on, so requests can be counted."""

    def __init__(self, root):
        self.dir = os.path.join(root, "registry")
        os.makedirs(self.dir)
        self.addr = f"127.0.0.1:{free_port()}"
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: error\n"
                f"storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n"
                f"    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.addr}\n  secret: bench\n"
            )
        self.log_path = os.path.join(self.dir, "log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log,
                                     stderr=self.log)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=1)
                return
            except Exception:
                time.sleep(0.05)
        raise SystemExit("the registry did not start")

    def mark(self):
        """Where the access log ends now."""
        self.log.flush()
        return os.path.getsize(self.log_path)

    def requests_since(self, mark):
        """{method: count} of the requests logged after `mark` (the /v2/ probe included)."""
        time.sleep(0.2)  # the registry writes its access log asynchronously
        counts = {}
        with open(self.log_path, "rb") as f:
            f.seek(mark)
            for line in f.read().decode(errors="replace").splitlines():
                for method in ("GET", "HEAD", "PUT", "POST", "PATCH", "DELETE"):
                    if f'"{method} /v2/' in line:
                        counts[method] = counts.get(method, 0) + 1
        return counts

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def git(lib, *args):
    subprocess.run(["git", "-C", lib, *args], check=True, capture_output=True)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def make_library(lib, registry, images, science, groups):
    write(os.path.join(lib, "graft.yaml"),
          f"repo: docker://{registry}/lib\ntarget: \"{{repo}}/{{name}}\"\n"
          "label_prefix: org.bench\nplatforms: [linux/amd64, linux/arm64]\n"
          "default_branch: main\ntags:\n  - \"{version}\"\n  - \"{version}-{build}-{commit}\"\n")
    write(os.path.join(lib, "layers", "platform-base", "layer.yaml"),
          "description: shared by every image\nconfig:\n  env:\n    PLATFORM: bench\n")
    write(os.path.join(lib, "layers", "platform-base", "files", "etc", "platform.conf"),
          "platform = bench\n")
    for g in range(groups):
        write(os.path.join(lib, "layers", f"group-{g}", "layer.yaml"),
              f"description: group {g}\nincludes: [platform-base]\n"
              f"config:\n  env:\n    GROUP: \"{g}\"\n  entrypoint: [/usr/local/bin/start.sh]\n"
              "modes:\n  /usr/local/bin/start.sh: 0755\n")
        write(os.path.join(lib, "layers", f"group-{g}", "files", "usr", "local", "bin",
                           "start.sh"), f"#!/bin/sh\necho group {g}\nexec \"$@\"\n")
    for i in range(images):
        write(os.path.join(lib, "manifests", f"image-{i:03}.yaml"),
              f"name: image-{i:03}\nversion: \"1.{i}\"\n"
              f"science:\n  image: docker://{registry}/science/sci-{i % science}:1.0\n"
              f"compat: group-{i % groups}\n")
    write(os.path.join(lib, "README.md"), "A generated library.\n")
    git(lib, "init", "-q", "-b", "main")
    git(lib, "add", "-A")
    git(lib, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", "library")


def commit(lib, message):
    git(lib, "add", "-A")
    git(lib, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qm", message)


def timed(argv, env):
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, env=env)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{proc.stderr.decode(errors='replace')}")
    return elapsed, proc.stdout


def statuses(report):
    """{status: count} of a refresh's JSON report."""
    out = {}
    for image in json.loads(report)["images"]:
        s = image.get("status", "written")
        out[s] = out.get(s, 0) + 1
    return out


def per_image(counts, n):
    total = sum(counts.values())
    detail = ", ".join(f"{m} {c / n:.2f}" for m, c in sorted(counts.items()))
    return f"{total / n:.2f} requests/image ({detail})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--science", type=int, default=10)
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3, help="timed runs of status and no-change")
    args = ap.parse_args()
    graft = ensure_graft()
    root = workdir()
    registry = LoggedRegistry(root)
    env = dict(os.environ, NO_COLOR="1")
    env.pop("SOURCE_DATE_EPOCH", None)
    try:
        for s in range(args.science):
            layout = os.path.join(root, f"sci-{s}")
            make_image(layout, 256 << 10, layers_per_platform=2)
            subprocess.run([graft, "--tls-verify=false", "copy", f"oci:{layout}:1.0",
                            f"docker://{registry.addr}/science/sci-{s}:1.0"],
                           check=True, capture_output=True, env=env)
        lib = os.path.join(root, "library")
        make_library(lib, registry.addr, args.images, args.science, args.groups)
        n = args.images
        first, out = timed([graft, "--tls-verify=false", "refresh", "--library", lib, "-o", "json"], env)
        print(f"first refresh of {n} images: {first:.2f} s, {statuses(out)}")

        write(os.path.join(lib, "README.md"), "A generated library, edited.\n")
        commit(lib, "docs only")
        results = {"status": [], "no-change refresh": []}
        for _ in range(args.rounds):
            mark = registry.mark()
            t, out = timed([graft, "--tls-verify=false", "status", "--library", lib, "-o", "json"], env)
            results["status"].append(t)
            status_requests = registry.requests_since(mark)
            mark = registry.mark()
            t, out = timed([graft, "--tls-verify=false", "refresh", "--library", lib, "-o", "json"], env)
            results["no-change refresh"].append(t)
            refresh_requests = registry.requests_since(mark)
            written = statuses(out)
            if written.get("written"):
                raise SystemExit(f"a no-change refresh wrote images: {written}")
            writes = sum(refresh_requests.get(m, 0) for m in ("PUT", "POST", "PATCH", "DELETE"))
            if writes:
                raise SystemExit(f"a no-change refresh sent {writes} write requests")
        print(f"\n{'job':<22} {'median s':>9} {'target':>8}  requests")
        for (job, times), req in zip(results.items(), (status_requests, refresh_requests)):
            med = statistics.median(times)
            verdict = "ok" if med < 2.0 else "MISSED"
            print(f"{job:<22} {med:>9.2f} {'< 2 s':>8}  {per_image(req, n)}  [{verdict}]")

        changed = 0
        write(os.path.join(lib, "layers", "group-0", "files", "usr", "local", "bin", "start.sh"),
              "#!/bin/sh\necho group 0, changed\nexec \"$@\"\n")
        commit(lib, "change one shared layer")
        dependents = len([i for i in range(n) if i % args.groups == 0])
        mark = registry.mark()
        t, out = timed([graft, "--tls-verify=false", "refresh", "--library", lib, "-o", "json"], env)
        req = registry.requests_since(mark)
        written = statuses(out)
        changed = written.get("written", 0)
        verdict = "ok" if changed == dependents else "MISSED"
        print(f"{'one-layer refresh':<22} {t:>9.2f} {'':>8}  {per_image(req, n)}  "
              f"wrote {changed} of {n} (dependents: {dependents}) [{verdict}]")
    finally:
        registry.stop()
        cleanup(root)


if __name__ == "__main__":
    main()
