#!/usr/bin/env python3
"""Write the deterministic sample "science" images used by graft's tests.

Produces two OCI image layouts next to this script:

  science/astro-base/   ref name "1.0": linux/amd64 + linux/arm64/v8, 2 layers each
  science/jupyter-sci/  ref name "2.4": linux/amd64 + linux/arm64/v8, 3 layers each,
                        the middle layer shared by both platforms (same digest)

Each layout's index.json points (annotation org.opencontainers.image.ref.name)
at an OCI image index whose two child manifests carry platform fields.

Everything is deterministic: mtime 0 in tar headers, gzip header mtime 0, no
gzip file name, uid/gid 0, sorted tar entries, gzip compresslevel 6, compact
JSON with a fixed key order. Running the script twice gives identical bytes.

Python 3 standard library only.
Usage: python3 testdata/make-science.py [OUT_DIR]   (default: testdata/science)
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "science")

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

CREATED = "1970-01-01T00:00:00Z"

PLATFORMS = [
    {"architecture": "amd64", "os": "linux"},
    {"architecture": "arm64", "os": "linux", "variant": "v8"},
]


def plat_str(p):
    s = p["os"] + "/" + p["architecture"]
    if "variant" in p:
        s += "/" + p["variant"]
    return s


def canon_json(obj):
    """Compact JSON, key order as written (dicts keep insertion order)."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- tar + gzip


def d(path, mode=0o755):
    return ("dir", path, mode, None)


def f(path, content, mode=0o644):
    if isinstance(content, str):
        content = content.encode("utf-8")
    return ("file", path, mode, content)


def l(path, target):
    return ("symlink", path, 0o777, target)


def make_tar(entries):
    """Uncompressed tar of entries, sorted by path, with deterministic headers."""
    buf = io.BytesIO()
    # USTAR: no pax headers, fails loudly on over-long names.
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for kind, path, mode, payload in sorted(entries, key=lambda e: e[1]):
            name = path.strip("/")
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            ti.mtime = 0
            ti.uid = 0
            ti.gid = 0
            ti.uname = ""
            ti.gname = ""
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = payload
                tar.addfile(ti)
            else:
                ti.type = tarfile.REGTYPE
                ti.size = len(payload)
                tar.addfile(ti, io.BytesIO(payload))
    return buf.getvalue()


def gzip_bytes(data):
    buf = io.BytesIO()
    # filename="" keeps the FNAME field out of the header; mtime=0 fixes MTIME.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=6, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def with_parents(entries):
    """Add a directory entry (0755) for every missing parent directory."""
    have = {e[1].strip("/") for e in entries}
    extra = []
    for e in entries:
        parts = e[1].strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            p = "/".join(parts[:i])
            if p not in have:
                have.add(p)
                extra.append(d(p))
    return entries + extra


# ---------------------------------------------------------------- layouts


class Layout:
    def __init__(self, root):
        self.root = root
        if os.path.exists(root):
            shutil.rmtree(root)
        os.makedirs(os.path.join(root, "blobs", "sha256"))
        with open(os.path.join(root, "oci-layout"), "wb") as fh:
            fh.write(canon_json({"imageLayoutVersion": "1.0.0"}))

    def blob(self, data, media_type):
        digest = hashlib.sha256(data).hexdigest()
        path = os.path.join(self.root, "blobs", "sha256", digest)
        with open(path, "wb") as fh:
            fh.write(data)
        return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}

    def layer(self, entries):
        tar = make_tar(with_parents(entries))
        desc = self.blob(gzip_bytes(tar), MT_LAYER)
        return desc, "sha256:" + hashlib.sha256(tar).hexdigest()

    def finish(self, index_desc, ref_name):
        top = {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [dict(index_desc, annotations={"org.opencontainers.image.ref.name": ref_name})],
        }
        with open(os.path.join(self.root, "index.json"), "wb") as fh:
            fh.write(canon_json(top))


def build_image(layout, name, version, layers_for, config_for, index_annotations):
    """layers_for(platform) -> [(entries, created_by)]; config_for(platform, diff_ids, history)."""
    children = []
    for plat in PLATFORMS:
        descs, diff_ids = [], []
        history = []
        for entries, created_by in layers_for(plat):
            if entries is None:
                history.append({"created": CREATED, "created_by": created_by, "comment": "buildkit.dockerfile.v0", "empty_layer": True})
                continue
            desc, diff_id = layout.layer(entries)
            descs.append(desc)
            diff_ids.append(diff_id)
            history.append({"created": CREATED, "created_by": created_by, "comment": "buildkit.dockerfile.v0"})
        config = config_for(plat, diff_ids, history)
        cdesc = layout.blob(canon_json(config), MT_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": descs}
        mdesc = layout.blob(canon_json(manifest), MT_MANIFEST)
        children.append(dict(mdesc, platform=dict(plat)))
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": children, "annotations": index_annotations}
    idesc = layout.blob(canon_json(index), MT_INDEX)
    layout.finish(idesc, version)
    return idesc


def image_config(plat, diff_ids, history, cfg):
    out = {"created": CREATED, "author": "graft test fixtures", "architecture": plat["architecture"], "os": plat["os"]}
    if "variant" in plat:
        out["variant"] = plat["variant"]
    out["config"] = cfg
    out["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    out["history"] = history
    return out


def os_release(plat):
    return (
        'NAME="Science Linux"\n'
        'ID=sciencelinux\n'
        'VERSION_ID="12"\n'
        'PRETTY_NAME="Science Linux 12 (%s)"\n' % plat_str(plat)
    )


# ---------------------------------------------------------------- astro-base


def astro_layers(plat):
    ps = plat_str(plat)
    base = [
        d("etc"),
        f("etc/os-release", os_release(plat)),
        f("etc/hostname", "astro\n"),
        f("etc/science-platform", ps + "\n"),
        d("usr/bin"),
        f("usr/bin/hello", "#!/bin/sh\necho hello from %s\n" % ps, 0o755),
        l("bin", "usr/bin"),
        d("tmp", 0o1777),
    ]
    app = [
        f("opt/astro/bin/astro", "#!/bin/sh\necho \"astro 1.0 on %s\"\n" % ps, 0o755),
        f("opt/astro/share/README", "Astro: a tiny stand-in for an astronomy toolkit.\nPlatform: %s\n" % ps),
        f("opt/astro/share/catalog.csv", "id,ra,dec,mag\n1,10.684,41.269,3.44\n2,83.822,-5.391,4.0\n"),
        d("opt/astro/data"),
        d("opt/astro/data/cache", 0o775),
        l("usr/local/bin/astro", "/opt/astro/bin/astro"),
    ]
    return [
        (base, "/bin/sh -c #(nop) ADD file:science-rootfs-%s in / " % plat["architecture"]),
        (None, "ENV ASTRO_HOME=/opt/astro"),
        (app, "COPY astro /opt/astro # buildkit"),
        (None, 'CMD ["/opt/astro/bin/astro"]'),
    ]


def astro_config(plat, diff_ids, history):
    cfg = {
        "User": "0:0",
        "Env": [
            "PATH=/opt/astro/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ASTRO_HOME=/opt/astro",
            "LANG=C.UTF-8",
        ],
        "Cmd": ["/opt/astro/bin/astro"],
        "WorkingDir": "/opt/astro",
        "Labels": {
            "org.opencontainers.image.title": "astro-base",
            "org.opencontainers.image.version": "1.0",
            "science.example/field": "astronomy",
        },
        "Healthcheck": {
            "Test": ["CMD", "/opt/astro/bin/astro", "--health"],
            "Interval": 30000000000,
            "Timeout": 5000000000,
            "Retries": 3,
        },
        "StopSignal": "SIGTERM",
        "ArgsEscaped": True,
    }
    return image_config(plat, diff_ids, history, cfg)


# ---------------------------------------------------------------- jupyter-sci


JUPYTER_SERVER_CONFIG = """# Jupyter server configuration shipped by the science image.
c = get_config()  # noqa: F821
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.root_dir = "/home/jovyan"
"""

START_SH = """#!/bin/sh
# Science image entrypoint (a compat layer replaces this file).
set -e
echo "starting jupyter-sci 2.4"
exec /opt/conda/bin/jupyter "$@"
"""


def jupyter_layers(plat):
    ps = plat_str(plat)
    base = [
        d("etc"),
        f("etc/os-release", os_release(plat)),
        f("etc/science-platform", ps + "\n"),
        d("usr/local/bin"),
        d("home/jovyan", 0o750),
        l("bin", "usr/bin"),
        d("usr/bin"),
    ]
    shared = [
        f("opt/conda/etc/jupyter/jupyter_server_config.py", JUPYTER_SERVER_CONFIG),
        f("usr/local/bin/start.sh", START_SH, 0o755),
        f("opt/conda/share/obsolete/old-kernel.json", '{"display_name":"Python 2 (obsolete)","language":"python"}\n'),
        f("opt/conda/share/obsolete/README", "Left over from an older release.\n"),
        d("opt/conda/share/obsolete/empty"),
        f("opt/conda/share/jupyter/kernels/python3/kernel.json", '{"argv":["python","-m","ipykernel_launcher","-f","{connection_file}"],"display_name":"Python 3","language":"python"}\n'),
    ]
    conda = [
        f("opt/conda/bin/jupyter", "#!/bin/sh\necho \"jupyter (fake) on %s: $*\"\n" % ps, 0o755),
        f("opt/conda/bin/python", "#!/bin/sh\necho \"python (fake) on %s\"\n" % ps, 0o755),
        f("opt/conda/conda-meta/history", "==> 1970-01-01 00:00:00 <==\n# cmd: conda install jupyter numpy (%s)\n" % ps),
        l("usr/local/bin/jupyter", "/opt/conda/bin/jupyter"),
    ]
    return [
        (base, "/bin/sh -c #(nop) ADD file:science-rootfs-%s in / " % plat["architecture"]),
        (shared, "COPY etc-and-scripts / # buildkit"),
        (None, "ENV CONDA_DIR=/opt/conda"),
        (conda, "RUN /bin/sh -c conda install -y jupyter numpy # buildkit"),
        (None, 'ENTRYPOINT ["/usr/local/bin/start.sh"]'),
        (None, 'CMD ["lab"]'),
    ]


def jupyter_config(plat, diff_ids, history):
    cfg = {
        "User": "1000:100",
        "ExposedPorts": {"8888/tcp": {}},
        "Env": [
            "PATH=/opt/conda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "CONDA_DIR=/opt/conda",
            "JUPYTER_PORT=8888",
        ],
        "Entrypoint": ["/usr/local/bin/start.sh"],
        "Cmd": ["lab"],
        "WorkingDir": "/home/jovyan",
        "Labels": {
            "org.opencontainers.image.title": "jupyter-sci",
            "org.opencontainers.image.version": "2.4",
            "maintainer": "Science Images Team",
        },
        "Healthcheck": {
            "Test": ["CMD-SHELL", "wget -qO- http://127.0.0.1:8888/api || exit 1"],
            "Interval": 15000000000,
            "StartPeriod": 10000000000,
        },
        "OnBuild": None,
    }
    return image_config(plat, diff_ids, history, cfg)


def index_annotations(title, version, revision):
    return {
        "org.opencontainers.image.created": CREATED,
        "org.opencontainers.image.title": title,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.source": "https://git.example.invalid/science/" + title,
        "org.opencontainers.image.vendor": "Science Images",
        "org.opencontainers.image.licenses": "Apache-2.0",
    }


def main():
    out = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else OUT
    os.makedirs(out, exist_ok=True)
    astro = build_image(
        Layout(os.path.join(out, "astro-base")),
        "astro-base",
        "1.0",
        astro_layers,
        astro_config,
        index_annotations("astro-base", "1.0", "0123456789abcdef0123456789abcdef01234567"),
    )
    jupyter = build_image(
        Layout(os.path.join(out, "jupyter-sci")),
        "jupyter-sci",
        "2.4",
        jupyter_layers,
        jupyter_config,
        index_annotations("jupyter-sci", "2.4", "89abcdef0123456789abcdef0123456789abcdef"),
    )
    print("astro-base:1.0  " + astro["digest"])
    print("jupyter-sci:2.4 " + jupyter["digest"])


if __name__ == "__main__":
    main()
