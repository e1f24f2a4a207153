#!/usr/bin/env python3
"""graft copy vs skopeo copy --all: the same ~1 GB two-platform image between two local
registries, side by side. Prints wall times, the ratio, and graft's peak RSS.

    python3 benches/copy_vs_skopeo.py [--size-mb 1024] [--rounds 3]
"""

import argparse
import statistics

from lib_bench import Registry, cleanup, ensure_graft, make_image, run_measured, workdir


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args()
    graft = ensure_graft()
    wd = workdir()
    regs = []
    try:
        src = Registry(wd, "src")
        regs = [src]
        layout = f"{wd}/image"
        make_image(layout, a.size_mb << 20)
        run_measured(["skopeo", "--insecure-policy", "copy", "--all", "--dest-tls-verify=false",
                      f"oci:{layout}:1.0", f"docker://{src.addr}/bench/science:1.0"])
        g_times, s_times, g_rss = [], [], []
        for r in range(a.rounds):
            # A fresh destination registry for every run: skopeo's blob-info cache remembers
            # where blobs were seen per registry host and would mount instead of copying.
            order = ["skopeo", "graft"] if r % 2 == 0 else ["graft", "skopeo"]
            for who in order:
                dst = Registry(wd, f"dst-{who}-{r}")
                regs.append(dst)
                if who == "skopeo":
                    t, _ = run_measured(["skopeo", "--insecure-policy", "copy", "--all", "-q",
                                         "--src-tls-verify=false", "--dest-tls-verify=false",
                                         f"docker://{src.addr}/bench/science:1.0",
                                         f"docker://{dst.addr}/bench/science:1.0"])
                    s_times.append(t)
                else:
                    t, rss = run_measured([graft, "-q", "--tls-verify=false", "copy", "--jobs", str(a.jobs),
                                           f"docker://{src.addr}/bench/science:1.0",
                                           f"docker://{dst.addr}/bench/science:1.0"])
                    g_times.append(t)
                    g_rss.append(rss)
                print(f"round {r}: {who:6} {t:7.2f} s", flush=True)
                dst.stop()
                regs.remove(dst)
                cleanup(dst.dir)
        g, s = statistics.median(g_times), statistics.median(s_times)
        print(f"image: two platforms, {a.size_mb} MiB of layers; {a.rounds} rounds, medians")
        print(f"skopeo copy --all : {s:7.2f} s")
        print(f"graft copy        : {g:7.2f} s")
        print(f"ratio skopeo/graft: {s / g:7.2f}x  (>= 1 means graft is at least as fast)")
        print(f"graft peak RSS    : {max(g_rss):7.1f} MiB (target < 100 MiB)")
    finally:
        for r in regs:
            r.stop()
        cleanup(wd)


if __name__ == "__main__":
    main()
