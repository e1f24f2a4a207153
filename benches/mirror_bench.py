#!/usr/bin/env python3
"""graft mirror (with attachments) vs skopeo copy --all, and an air-gap export/import through
an oci-archive vs cp of the same bytes: the same ~1 GB two-platform image, signed by graft,
between two local registries. Prints wall times, ratios and graft's peak RSS.

    python3 benches/mirror_bench.py [--size-mb 1024]
"""

import argparse
import os
import shutil
import subprocess
import time

from lib_bench import Registry, cleanup, ensure_graft, make_image, run_measured, workdir


def sync_file(path, destination, repository, tag=None):
    with open(path, "w") as f:
        f.write(f"destination: {destination}\nwith_attachments: true\nsources:\n"
                f"  - repository: {repository}\n")
        if tag:
            f.write(f"    tags: ['{tag}']\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args()
    graft = ensure_graft()
    wd = workdir()
    regs = []
    env = dict(os.environ, COSIGN_PASSWORD="bench-password")
    try:
        src = Registry(wd, "src")
        regs.append(src)
        layout = f"{wd}/image"
        make_image(layout, a.size_mb << 20)
        run_measured(["skopeo", "--insecure-policy", "copy", "--all", "--dest-tls-verify=false",
                      f"oci:{layout}:1.0", f"docker://{src.addr}/bench/science:1.0"])
        subprocess.run([graft, "generate-key-pair", "--output-key-prefix", f"{wd}/ci"], env=env,
                       check=True, capture_output=True)
        subprocess.run([graft, "-q", "--tls-verify=false", "sign", "--key", f"{wd}/ci.key",
                        f"docker://{src.addr}/bench/science:1.0"], env=env, check=True,
                       capture_output=True)

        # Registry to registry: skopeo copy --all (drops the signature) vs graft mirror.
        dst_s = Registry(wd, "dst-skopeo")
        regs.append(dst_s)
        t_s, _ = run_measured(["skopeo", "--insecure-policy", "copy", "--all", "-q",
                               "--src-tls-verify=false", "--dest-tls-verify=false",
                               f"docker://{src.addr}/bench/science:1.0",
                               f"docker://{dst_s.addr}/bench/science:1.0"])
        dst_g = Registry(wd, "dst-graft")
        regs.append(dst_g)
        cfg = f"{wd}/r2r.yaml"
        sync_file(cfg, f"docker://{dst_g.addr}", f"docker://{src.addr}/bench/science", "1.0")
        t_g, rss_g = run_measured([graft, "-q", "--tls-verify=false", "mirror",
                                   "--config", cfg])
        subprocess.run([graft, "-q", "--tls-verify=false", "verify", "--key", f"{wd}/ci.pub",
                        f"docker://{dst_g.addr}/bench/science:1.0"], check=True,
                       capture_output=True)

        # Air gap: export to an archive, import from it, vs cp of the same bytes.
        archive = f"{wd}/export.tar"
        cfg = f"{wd}/export.yaml"
        sync_file(cfg, f"oci-archive:{archive}", f"docker://{src.addr}/bench/science", "1.0")
        # Each timed step starts with nothing dirty: its own writeback only (os.sync() flushes
        # every file, the registries' too).
        os.sync()
        t_exp, rss_exp = run_measured([graft, "-q", "--tls-verify=false", "mirror", "--config", cfg])
        dst_i = Registry(wd, "dst-import")
        regs.append(dst_i)
        cfg = f"{wd}/import.yaml"
        sync_file(cfg, f"docker://{dst_i.addr}", f"oci-archive:{archive}")
        os.sync()
        t_imp, rss_imp = run_measured([graft, "-q", "--tls-verify=false", "mirror",
                                       "--verify-key", f"{wd}/ci.pub", "--config", cfg])
        os.sync()
        start = time.monotonic()
        shutil.copyfile(archive, f"{wd}/copy.tar")
        os.sync()
        t_cp = time.monotonic() - start
        size = os.path.getsize(archive) / (1 << 20)

        print(f"image: two platforms, {a.size_mb} MiB of layers, one graft signature")
        print(f"skopeo copy --all (no signature)  : {t_s:7.2f} s")
        print(f"graft mirror (with attachments)   : {t_g:7.2f} s")
        print(f"ratio skopeo/graft                : {t_s / t_g:7.2f}x  (>= 1: graft as fast)")
        print(f"export to oci-archive ({size:.0f} MiB)  : {t_exp:7.2f} s")
        print(f"import with --verify-key          : {t_imp:7.2f} s")
        print(f"cp of the archive                 : {t_cp:7.2f} s")
        print(f"ratio export/cp, import/cp        : {t_exp / t_cp:7.2f}x, {t_imp / t_cp:7.2f}x"
              "  (target <= 1.5)")
        print(f"graft peak RSS (mirror/export/import): {rss_g:.1f} / {rss_exp:.1f} / {rss_imp:.1f} MiB")
    finally:
        for r in regs:
            r.stop()
        cleanup(wd)


if __name__ == "__main__":
    main()
