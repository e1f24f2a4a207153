#!/usr/bin/env python3
"""The CI signing step: sign and attest 100 two-platform images (the index and both platform
manifests of each, so 300 signatures and 300 SLSA attestations) on a local registry, with one
`graft sign` and one `graft attest` run. Prints the times and images per second; the target is
under 5 s in total.

    python3 benches/sign_bench.py [--images 100] [--rounds 3] [--jobs 16] [--format simple]

Each round uses a fresh registry (a second signing would find everything already signed). The
rounds run twice: with the registry's storage on disk (the work dir, like a real registry) and
on tmpfs (/dev/shm). distribution's filesystem driver fsyncs every file it writes (about 30
fsyncs per cosign signature: two blob uploads and a manifest), which on a virtual disk costs
more than everything else together; the tmpfs rounds show the cost without the disk. The
registry's own CPU time is printed next to graft's wall time.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

from lib_bench import Registry, cleanup, ensure_graft, make_image, run_measured, workdir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--format", default="simple", choices=["simple", "bundle", "both"])
    ap.add_argument("--disk-only", action="store_true", help="skip the tmpfs rounds")
    a = ap.parse_args()
    graft = ensure_graft()
    wd = workdir()
    env = dict(os.environ, COSIGN_PASSWORD="bench-password")
    regs = []
    shm = []
    try:
        subprocess.run([graft, "generate-key-pair", "--output-key-prefix", f"{wd}/ci"], env=env,
                       check=True, stderr=subprocess.DEVNULL)
        predicate = f"{wd}/provenance.json"
        with open(predicate, "w") as f:
            json.dump({
                "buildDefinition": {
                    "buildType": "https://graft.dev/buildtypes/refresh/v1",
                    "externalParameters": {"manifest": {"path": "manifests/astro.yaml"}},
                },
                "runDetails": {"builder": {"id": "https://graft.dev/builders/local"},
                               "metadata": {"startedOn": "2024-01-01T00:00:00Z",
                                            "finishedOn": "2024-01-01T00:00:10Z"}},
            }, f)
        layouts = []
        for i in range(a.images):
            layout = f"{wd}/img{i}"
            make_image(layout, 8 << 10, layers_per_platform=1)
            layouts.append(layout)
        storages = [("disk", wd)]
        if os.path.isdir("/dev/shm") and not a.disk_only:
            shm.append(tempfile.mkdtemp(prefix="graft-bench-", dir="/dev/shm"))
            storages.append(("tmpfs", shm[-1]))
        summary = []
        for storage, root in storages:
            summary.append((storage, *rounds(a, graft, env, wd, storage, root, layouts, predicate, regs)))
        print(f"\n{a.images} two-platform images ({3 * a.images} digests), format {a.format}, jobs {a.jobs}:")
        for storage, sign_t, attest_t, totals, reg_cpu in summary:
            med = statistics.median(totals)
            print(f"registry storage on {storage}:")
            print(f"  sign   median {statistics.median(sign_t):5.2f} s")
            print(f"  attest median {statistics.median(attest_t):5.2f} s")
            print(f"  total  median {med:5.2f} s = {a.images / med:.1f} images/s "
                  f"(target < 5 s: {'met' if med < 5 else 'MISSED'}); "
                  f"registry CPU {statistics.median(reg_cpu):.2f} s")
    finally:
        for reg in regs:
            try:
                reg.stop()
            except Exception:
                pass
        for root in shm:
            cleanup(root)
        cleanup(wd)


def rounds(a, graft, env, wd, storage, root, layouts, predicate, regs):
    """Sign and attest every image on a fresh registry stored under `root`, `a.rounds` times."""
    sign_t, attest_t, totals, reg_cpu = [], [], [], []
    for r in range(a.rounds):
        reg = Registry(root, f"reg{r}")
        regs.append(reg)
        refs = [f"docker://{reg.addr}/bench/img{i}:1.0" for i in range(a.images)]
        for layout, ref in zip(layouts, refs):
            subprocess.run([graft, "-q", "--tls-verify=false", "copy", f"oci:{layout}:1.0", ref],
                           check=True, stdout=subprocess.DEVNULL)
        cpu0 = reg.cpu_seconds()
        t_sign, _ = run_measured([graft, "-q", "--tls-verify=false", "sign", "--key", f"{wd}/ci.key",
                                  "--recursive", "--format", a.format, "--jobs", str(a.jobs), *refs], env=env)
        t_attest, _ = run_measured([graft, "-q", "--tls-verify=false", "attest", "--key", f"{wd}/ci.key",
                                    "--recursive", "--format", a.format, "--jobs", str(a.jobs),
                                    "--type", "slsaprovenance1", "--predicate", predicate, *refs], env=env)
        total = t_sign + t_attest
        reg_cpu.append(reg.cpu_seconds() - cpu0)
        sign_t.append(t_sign)
        attest_t.append(t_attest)
        totals.append(total)
        print(f"{storage} round {r}: sign {t_sign:5.2f} s, "
              f"attest {t_attest:5.2f} s, total {total:5.2f} s, "
              f"{a.images / total:6.1f} images/s ({3 * a.images / total:6.1f} digests/s), "
              f"registry CPU {reg_cpu[-1]:.2f} s", flush=True)
        # Spot check: everything verifies (not timed).
        for ref in (refs[0], refs[-1]):
            subprocess.run([graft, "-q", "--tls-verify=false", "verify", "--key", f"{wd}/ci.pub",
                            "--recursive", ref], check=True, stdout=subprocess.DEVNULL)
            subprocess.run([graft, "-q", "--tls-verify=false", "verify-attestation", "--key", f"{wd}/ci.pub",
                            "--type", "slsaprovenance1", "--recursive", ref], check=True,
                           stdout=subprocess.DEVNULL)
        reg.stop()
    return sign_t, attest_t, totals, reg_cpu


if __name__ == "__main__":
    main()
