#!/usr/bin/env python3
"""graft factory check over many enrolled images sharing few Digest-style bases, against a
local registry: wall time, and the manifest requests made (issue 15: 500 images on 50 bases,
one manifest HEAD per distinct base tag, under 3 s).

    python3 benches/factory_bench.py [--images 500] [--bases 50] [--rounds 3]

GRAFT=path/to/graft uses that binary instead of building the release one. The images are
`provider: local` (Dockerfiles on disk): the bench measures check, not git.
"""

import argparse
import hashlib
import json
import os
import re
import statistics
import subprocess
import time
import urllib.request

from lib_bench import Registry, cleanup, ensure_graft, workdir


def push(addr, repo, tag, seed):
    """A config-only image whose digest depends on seed."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": {"seed": seed}}}).encode()
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    req = urllib.request.Request(f"http://{addr}/v2/{repo}/blobs/uploads/", method="POST")
    loc = urllib.request.urlopen(req).headers["Location"]
    if not loc.startswith("http"):
        loc = f"http://{addr}{loc}"
    sep = "&" if "?" in loc else "?"
    urllib.request.urlopen(urllib.request.Request(f"{loc}{sep}digest={digest}", data=config, method="PUT",
                                                  headers={"Content-Type": "application/octet-stream"}))
    mt = "application/vnd.oci.image.manifest.v1+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": mt,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digest, "size": len(config)},
                           "layers": []}).encode()
    urllib.request.urlopen(urllib.request.Request(f"http://{addr}/v2/{repo}/manifests/{tag}", data=manifest,
                                                  method="PUT", headers={"Content-Type": mt}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--bases", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    graft = ensure_graft()
    wd = workdir()
    reg = None
    try:
        reg = Registry(wd, "reg")
        for b in range(a.bases):
            push(reg.addr, f"library/base{b}", "1", f"b{b}")
        lines = []
        for i in range(a.images):
            d = os.path.join(wd, "src", f"app{i}")
            os.makedirs(d)
            with open(os.path.join(d, "Dockerfile"), "w") as f:
                f.write(f"FROM {reg.addr}/library/base{i % a.bases}:1\nRUN true\n")
            lines.append(f"- name: app{i}\n  registry: {reg.addr}\n  repository: apps/app{i}\n"
                         f"  source: {{provider: local, repo: {d}}}\n  rebuildDelay: 1d\n  autoRebuild: true\n")
        with open(os.path.join(wd, "images.yaml"), "w") as f:
            f.write("".join(lines))
        base = [graft, "-q", "--tls-verify=false", "factory"]
        t0 = time.monotonic()
        subprocess.run(base + ["sync", "--now", "2024-12-04T10:00:00Z"], cwd=wd, check=True,
                       stdout=subprocess.DEVNULL)
        print(f"sync ({a.images} images)       : {time.monotonic() - t0:7.2f} s")
        times = []
        for r in range(a.rounds):
            t0 = time.monotonic()
            p = subprocess.run([graft, "-v", "-q", "--tls-verify=false", "factory", "check",
                                "--now", "2024-12-04T10:00:00Z"], cwd=wd, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            times.append(time.monotonic() - t0)
            heads = len(re.findall(r"HEAD \S+/manifests/\S+ -> ", p.stderr))
            gets = len(re.findall(r"GET \S+/manifests/\S+ -> ", p.stderr))
            print(f"check round {r}: {times[-1]:6.2f} s, {heads} manifest HEADs, {gets} manifest GETs", flush=True)
            assert heads == a.bases, f"{heads} HEADs for {a.bases} bases"
        med = statistics.median(times)
        print(f"check median                : {med:7.2f} s  ({'under' if med < 3 else 'OVER'} 3 s)")
    finally:
        if reg:
            reg.stop()
        cleanup(wd)


if __name__ == "__main__":
    main()
