#!/usr/bin/env python3
"""Recovery at scale: one file out of 1,000,000, and the FUSE mount, with a cold page cache.

Builds (once, kept in bench/work/scale) a repository of a 1,000,000-file tree (100 folders of
10,000 small files, on tmpfs as the source) plus a 500 MB subtree of larger files, with 100
recovery points (each after changing a few files). Then, each time after dropping the page
cache (root): `aeon restore latest:/one/file`, `aeon dump latest:/one/file`, the mount's root
and a 10,000-entry folder listed, one file read with `cat`, and the 500 MB subtree copied with
`rsync -a` from the mount against `aeon restore` of it. Usage: bench/scale.py [--points 100]
[--reps 3]; needs a release build (cargo build --release) and root.
"""
import argparse, json, os, random, shutil, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AEON = ROOT / "target" / "release" / "aeon"
WORK = ROOT / "bench" / "work" / "scale"
SRC = Path("/dev/shm/aeon-scale-src")  # the source on tmpfs: 1,000,000 files without 4 GB of disk blocks
FOLDERS, PER_FOLDER = 100, 10_000


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, **kw)


def aeon(*args, env, **kw):
    return run(AEON, *args, env=env, **kw)


def drop_caches():
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(fn):
    drop_caches()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build(env, points):
    rng = random.Random(1)
    if not (SRC / "done").exists():
        print("writing 1,000,000 small files and 500 MB of larger ones...", flush=True)
        shutil.rmtree(SRC, ignore_errors=True)
        for d in range(FOLDERS):
            folder = SRC / "small" / f"dir{d:03}"
            folder.mkdir(parents=True)
            for f in range(PER_FOLDER):
                (folder / f"file{f:05}.txt").write_bytes(rng.randbytes(rng.randint(50, 900)))
        big = SRC / "big"
        big.mkdir()
        for f in range(50):
            (big / f"part{f:02}.bin").write_bytes(os.urandom(10 << 20))
        (SRC / "done").write_text("")
    if (WORK / "points").exists() and int((WORK / "points").read_text()) >= points:
        return
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    aeon("init", env=env, stdout=subprocess.DEVNULL)
    for p in range(points):
        # A few files change between points, as a day's work would.
        for _ in range(20):
            d, f = rng.randrange(FOLDERS), rng.randrange(PER_FOLDER)
            (SRC / "small" / f"dir{d:03}" / f"file{f:05}.txt").write_bytes(rng.randbytes(300))
        t = time.perf_counter()
        aeon("backup", SRC, "--quiet", env=env)
        print(f"point {p + 1}/{points}: {time.perf_counter() - t:.1f} s", flush=True)
    (WORK / "points").write_text(str(points))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the page cache is dropped between measurements, and FUSE needs /dev/fuse")
    env = dict(os.environ, AEON_REPOSITORY=str(WORK / "repo"), AEON_PASSWORD="bench",
               XDG_CACHE_HOME=str(WORK / "cache"))
    build(env, a.points)
    one = SRC / "small" / "dir042" / "file04242.txt"
    out = WORK / "out"
    results = {"files": FOLDERS * PER_FOLDER + 50, "points": a.points}

    def measure(name, fn, before=None):
        times = []
        for _ in range(a.reps):
            if before:
                before()
            times.append(timed(fn))
        results[name] = round(statistics.median(times), 3)
        print(f"{name}: median {results[name]} s of {[round(t, 3) for t in times]}", flush=True)

    clean = lambda: shutil.rmtree(out, ignore_errors=True)
    measure("restore_one_file_s",
            lambda: aeon("restore", f"latest:{one}", "--target", out, "--quiet", env=env), clean)
    measure("dump_one_file_s",
            lambda: aeon("dump", f"latest:{one}", env=env, stdout=subprocess.DEVNULL))
    measure("restore_500mb_subtree_s",
            lambda: aeon("restore", f"latest:{SRC / 'big'}", "--target", out, "--quiet", env=env), clean)

    mnt = WORK / "mnt"
    mnt.mkdir(exist_ok=True)

    def on_mount(name, fn, before=None):
        """Mounts, drops the page cache, times `fn` alone, unmounts; the median of the reps."""
        times, appear = [], []
        for _ in range(a.reps):
            if before:
                before()
            drop_caches()
            t0 = time.perf_counter()
            proc = subprocess.Popen([str(AEON), "mount", str(mnt)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while f" {mnt} " not in Path("/proc/mounts").read_text():
                time.sleep(0.005)
            appear.append(time.perf_counter() - t0)
            try:
                drop_caches()
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            finally:
                run("fusermount3", "-u", mnt)
                proc.wait()
        results[name] = round(statistics.median(times), 3)
        results.setdefault("_appear", []).extend(appear)
        print(f"{name}: median {results[name]} s of {[round(t, 3) for t in times]}", flush=True)

    inside = mnt / "snapshots" / "latest" / str(SRC).lstrip("/")
    on_mount("mount_list_root_s", lambda: (os.listdir(mnt), os.listdir(mnt / "snapshots")))
    on_mount("mount_list_10000_entries_s",
             lambda: subprocess.run(["ls", "-l", inside / "small" / "dir042"], check=True,
                                    stdout=subprocess.DEVNULL))
    on_mount("mount_cat_one_file_s",
             lambda: run("cat", inside / "small" / "dir042" / "file04242.txt", stdout=subprocess.DEVNULL))
    on_mount("mount_rsync_500mb_subtree_s", lambda: run("rsync", "-a", f"{inside / 'big'}/", out), clean)
    results["mount_appears_s"] = round(statistics.median(results.pop("_appear")), 3)
    clean()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
