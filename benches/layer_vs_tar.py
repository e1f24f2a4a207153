#!/usr/bin/env python3
"""graft layer build vs GNU tar + gzip: the same ~200 MB mixed tree turned into a gzip layer,
side by side. Prints wall times (median of --rounds), the ratio, both output sizes, and
graft's peak RSS, also for a tree twice as big (memory must stay flat).

    python3 benches/layer_vs_tar.py [--size-mb 200] [--rounds 3]

The baseline is the issue's reproducible tar:
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C TREE -c . | gzip -n > Y
"""

import argparse
import os
import random
import statistics
import subprocess
import sys

import time

from lib_bench import cleanup, ensure_graft, workdir

WORDS = (
    "star galaxy flux spectrum redshift pixel catalog survey noise calibration telescope "
    "photometry aperture magnitude exposure detector wavelength emission absorption nebula "
    "cluster quasar pulsar parallax luminosity import numpy as np def return class self "
    "for in range if else print data frame value error warning info debug config path"
).split()


def text_pool(rng, size):
    """`size` bytes of word salad with numbers and line breaks: compresses like source text."""
    parts, n = [], 0
    while n < size:
        line = " ".join(rng.choices(WORDS, k=rng.randint(3, 14)))
        line += f" {rng.random():.6f} {rng.randint(0, 99999)}\n"
        parts.append(line)
        n += len(line)
    return "".join(parts).encode()[:size]


def make_tree(root, size_mb, seed=42):
    """A mixed tree of about `size_mb` MiB: many small text files in nested directories,
    medium files, a few large compressible and incompressible files, symlinks, hard links."""
    rng = random.Random(seed)
    pool = text_pool(rng, 8 << 20)
    scale = size_mb / 200.0
    total = 0

    def slice_of(n):
        start = rng.randrange(0, len(pool) - n) if n < len(pool) else 0
        return pool[start:start + n]

    def put(rel, data, mode=0o644):
        nonlocal total
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)
        total += len(data)

    dirs = []
    for i in range(int(400 * scale)):
        depth = rng.randint(1, 6)
        dirs.append("/".join(f"d{rng.randint(0, 30)}" for _ in range(depth)) + f"/pkg{i}")
    # ~40 MB of small files (0.2-4 KiB), some executable.
    small_files = []
    for i in range(int(20000 * scale)):
        d = rng.choice(dirs)
        mode = 0o755 if i % 17 == 0 else 0o644
        small_files.append(f"small/{d}/f{i}.py")
        put(small_files[-1], slice_of(rng.randint(200, 4096)), mode)
    # ~60 MB of medium files (100-300 KiB): text, and partly binary-like.
    for i in range(int(300 * scale)):
        n = rng.randint(100 << 10, 300 << 10)
        data = slice_of(n) if i % 3 else rng.randbytes(n // 4) + slice_of(n - n // 4)
        put(f"medium/{rng.choice(dirs)}/m{i}.dat", data)
    # ~60 MB of large compressible files.
    for i in range(max(1, int(3 * scale))):
        put(f"large/table{i}.csv", b"".join(slice_of(1 << 20) for _ in range(20)))
    # ~40 MB of incompressible files.
    for i in range(max(1, int(2 * scale))):
        put(f"large/blob{i}.bin", rng.randbytes(20 << 20))
    # Symlinks and hard links.
    for i in range(int(500 * scale)):
        d = rng.choice(dirs)
        p = os.path.join(root, "links", d, f"l{i}")
        os.makedirs(os.path.dirname(p), exist_ok=True)
        if not os.path.lexists(p):
            os.symlink(f"/small/{rng.choice(dirs)}/f{i}.py", p)
    os.makedirs(os.path.join(root, "hard"), exist_ok=True)
    for i in range(int(50 * scale)):
        os.link(os.path.join(root, small_files[i * 7]), os.path.join(root, "hard", f"h{i}"))
    return total


def run_measured(argv, env=None):
    """Run argv; return (wall seconds, peak RSS in MiB, CPU seconds of it and its children).
    CPU time is the fairer number on a shared machine: wall time depends on the load."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{err}")
    return elapsed, usage.ru_maxrss / 1024.0, usage.ru_utime + usage.ru_stime


def make_tree_in_child(root, size_mb, seed):
    """make_tree in a child process: ru_maxrss survives fork+exec, so the benchmark's own
    process must stay small or graft's peak RSS would be reported as Python's."""
    out = subprocess.run([sys.executable, __file__, "--make-tree", root, str(size_mb), str(seed)],
                         check=True, capture_output=True, text=True)
    return int(out.stdout)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--make-tree":
        print(make_tree(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    graft = ensure_graft()
    wd = workdir()
    try:
        tree = os.path.join(wd, "tree")
        size = make_tree_in_child(tree, a.size_mb, 42)
        print(f"tree: {size / 1e6:.0f} MB of file data", flush=True)
        out_g = os.path.join(wd, "graft.tar.gz")
        out_t = os.path.join(wd, "tar.tar.gz")
        graft_cmd = [graft, "layer", "build", tree, "-f", out_g]
        env = dict(os.environ, SOURCE_DATE_EPOCH="0")
        tar_cmd = ["sh", "-c",
                   "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner "
                   f"-C '{tree}' -c . | gzip -n > '{out_t}'"]
        g_times, t_times, g_rss, g_cpu, t_cpu = [], [], [], [], []
        for r in range(a.rounds):
            order = ["tar", "graft"] if r % 2 == 0 else ["graft", "tar"]
            for who in order:
                if who == "graft":
                    t, rss, cpu = run_measured(graft_cmd, env=env)
                    g_times.append(t)
                    g_rss.append(rss)
                    g_cpu.append(cpu)
                else:
                    t, _, cpu = run_measured(tar_cmd)
                    t_times.append(t)
                    t_cpu.append(cpu)
                print(f"round {r}: {who:5} {t:7.2f} s wall, {cpu:7.2f} s CPU", flush=True)
        subprocess.run(["gzip", "-t", out_g], check=True)
        z_time, _, _ = run_measured([graft, "layer", "build", tree, "--compression", "zstd",
                                  "-f", os.path.join(wd, "graft.tar.zst")], env=env)
        g, t = statistics.median(g_times), statistics.median(t_times)
        print(f"tree: {size / 1e6:.0f} MB; {a.rounds} rounds, medians; {os.cpu_count()} CPUs")
        tc, gc = statistics.median(t_cpu), statistics.median(g_cpu)
        print(f"tar | gzip -n       : {t:7.2f} s wall, {tc:7.2f} s CPU -> {os.path.getsize(out_t) / 1e6:7.1f} MB")
        print(f"graft layer build   : {g:7.2f} s wall, {gc:7.2f} s CPU -> {os.path.getsize(out_g) / 1e6:7.1f} MB")
        print(f"ratio tar/graft     : {t / g:7.2f}x wall, {tc / gc:5.2f}x CPU (>= 1: graft at least as fast)")
        print(f"graft --compression zstd: {z_time:7.2f} s")
        print(f"graft peak RSS      : {max(g_rss):7.1f} MiB")
        cleanup(tree)
        os.remove(out_g)
        os.remove(out_t)
        big = os.path.join(wd, "tree2")
        size2 = make_tree_in_child(big, 2 * a.size_mb, 43)
        t2, rss2, _ = run_measured([graft, "layer", "build", big, "-f", out_g], env=env)
        print(f"graft, 2x tree ({size2 / 1e6:.0f} MB): {t2:7.2f} s, peak RSS {rss2:7.1f} MiB "
              "(flat memory: about the same RSS)")
    finally:
        cleanup(wd)


if __name__ == "__main__":
    main()
