"""Shared helpers for graft's side-by-side benchmarks: real registries, timing, peak RSS."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFT = os.environ.get("GRAFT", os.path.join(ROOT, "target", "release", "graft"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A real docker-registry on 127.0.0.1, storage in a temp dir."""

    def __init__(self, workdir, name):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  cache:\n    blobdescriptor: inmemory\n  filesystem:\n    rootdirectory: {self.dir}/data\n  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.addr}\n  secret: bench\n"
            )
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log, stderr=self.log)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=1)
                return
            except Exception:
                time.sleep(0.05)
        raise SystemExit(f"registry {name} did not start")

    def cpu_seconds(self):
        """User + system CPU time the registry process has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def run_measured(argv, env=None):
    """Run argv; return (seconds, peak RSS in MiB). Fails loudly.

    Peak RSS comes from /usr/bin/time (a small C program), not from this Python process's
    wait4: Linux counts the pre-exec memory of a forked child, which would charge Python's own
    size to the measured program."""
    start = time.monotonic()
    with tempfile.NamedTemporaryFile("r") as rss:
        proc = subprocess.Popen(["/usr/bin/time", "-o", rss.name, "-f", "%M", *argv],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, err = proc.communicate()
        elapsed = time.monotonic() - start
        if proc.returncode != 0:
            raise SystemExit(f"failed: {' '.join(argv)}\n{err.decode(errors='replace')}")
        kib = int(rss.read().strip().splitlines()[-1])
    return elapsed, kib / 1024.0


def random_blob(layout, size, seed, tar=False):
    """Write `size` random (incompressible) bytes as a blob; return its descriptor. With
    `tar`, the blob is a real uncompressed tar holding one file of those bytes (for tools that
    unpack layers, like buildah)."""
    import tarfile
    h = hashlib.sha256()
    tmp = os.path.join(layout, "blobs", "sha256", f"tmp-{seed}")
    total = 0
    with open(tmp, "wb") as f:
        def put(b):
            nonlocal total
            f.write(b)
            h.update(b)
            total += len(b)
        if tar:
            info = tarfile.TarInfo(f"data/{seed}.bin")
            info.size = size
            put(info.tobuf(format=tarfile.USTAR_FORMAT))
        left = size
        while left > 0:
            put(os.urandom(min(left, 1 << 20)))
            left -= min(left, 1 << 20)
        if tar:
            put(b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024)
    digest = h.hexdigest()
    os.rename(tmp, os.path.join(layout, "blobs", "sha256", digest))
    media = "application/vnd.oci.image.layer.v1.tar" if tar else "application/vnd.oci.image.layer.v1.tar+gzip"
    return {"mediaType": media, "digest": f"sha256:{digest}", "size": total}


def put_json(layout, doc):
    data = json.dumps(doc, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return f"sha256:{digest}", len(data)


def make_image(layout, total_bytes, layers_per_platform=4, tag="1.0", tar=False):
    """A two-platform OCI layout of about `total_bytes` of random layers (real tar layers with
    `tar`, whose diff_ids then equal their digests)."""
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    per_layer = total_bytes // (2 * layers_per_platform)
    entries = []
    for i, (arch, variant) in enumerate([("amd64", None), ("arm64", "v8")]):
        layers = [random_blob(layout, per_layer, f"{arch}-{j}", tar) for j in range(layers_per_platform)]
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
        }
        cd, cs = put_json(layout, config)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": layers,
        }
        md, ms = put_json(layout, manifest)
        platform = {"architecture": arch, "os": "linux"}
        if variant:
            platform["variant"] = variant
        entries.append({"mediaType": manifest["mediaType"], "digest": md, "size": ms, "platform": platform})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    idd, ids = put_json(layout, index)
    top = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": index["mediaType"],
                "digest": idd,
                "size": ids,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(top, f)


def ensure_graft():
    if "GRAFT" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return GRAFT


def workdir():
    d = tempfile.mkdtemp(prefix="graft-bench-", dir=os.environ.get("BENCH_TMP"))
    return d


def cleanup(d):
    shutil.rmtree(d, ignore_errors=True)
