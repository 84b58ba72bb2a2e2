#!/usr/bin/env python3
"""Aeon against restic, borg and rustic, side by side in one run.

Every tool runs with its default settings into a local repository on the same file system as
the data. The tools are interleaved (A B C D, A B C D, ...) for REPS repetitions and the
medians reported. The page cache is dropped before every timed phase. Wall time, CPU time and
peak RSS come from /usr/bin/time; repository size from the bytes on disk. Each repetition first
measures the in-memory pipeline limit of its dataset (examples/pipeline_limit) into limits.md.

Usage: bench/run.sh (installs the peers and builds Aeon first), or
       bench/bench.py [--reps N] [--datasets src,large,small] [--tools aeon,restic,rustic,borg]
"""
import argparse
import csv
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORK = HERE / "work"
RESULTS = HERE / "results"
AEON = ROOT / "target" / "release" / "aeon"
PASSWORD = "bench-password"

ENV = dict(os.environ, AEON_PASSWORD=PASSWORD, RESTIC_PASSWORD=PASSWORD, RUSTIC_PASSWORD=PASSWORD,
           BORG_PASSPHRASE=PASSWORD, BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
           BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes", BORG_CHECK_I_KNOW_WHAT_I_AM_DOING="YES",
           RESTIC_CACHE_DIR=str(WORK / "cache-restic"), BORG_BASE_DIR=str(WORK / "borg-base"),
           XDG_CACHE_HOME=str(WORK / "cache-xdg"))


def drop_caches():
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        sys.exit(f"cannot drop the page cache ({e}); run as root")


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


# ---------------------------------------------------------------------------------------- data

def copy_tree(src, dst):
    if dst.exists():
        shutil.rmtree(dst)
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


def make_src_tree(dst):
    """A source-tree-like set: a copy of /usr/share (tens of thousands of real text files)."""
    copy_tree(Path("/usr/share"), dst)
    # Dangling links and odd files in /usr/share are fine; sockets are not expected.


def make_next_day(day1, day2, seed=4):
    """1% of files deleted, 3% modified (bytes inserted in the middle, or appended), 1% new."""
    copy_tree(day1, day2)
    rng = random.Random(seed)
    files = sorted(p for p in day2.rglob("*") if p.is_file() and not p.is_symlink())
    rng.shuffle(files)
    n = len(files)
    deleted, modified = files[: n // 100], files[n // 100: n // 100 + 3 * n // 100]
    for p in deleted:
        p.unlink()
    for i, p in enumerate(modified):
        data = p.read_bytes()
        insert = rng.randbytes(rng.randint(1, 200))
        if i % 2 == 0:
            mid = len(data) // 2
            data = data[:mid] + insert + data[mid:]
        else:
            data = data + insert
        p.write_bytes(data)
    dirs = sorted({p.parent for p in files[n // 10:]})
    for i in range(n // 100):
        d = dirs[rng.randrange(len(dirs))]
        if d.exists():
            (d / f"new-file-{i}.txt").write_bytes(rng.randbytes(rng.randint(100, 20000)).hex().encode())


def make_large(dst, seed=2):
    """2 GiB in a few large files: incompressible, compressible, and runs of zeros."""
    dst.mkdir(parents=True)
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    text = b" ".join(rng.choice(words) for _ in range(4_000_000))
    mib = 1 << 20
    for name, parts in [("disk.img", [("rand", 512), ("zero", 128), ("text", 256)]),
                        ("database.db", [("text", 384), ("rand", 256), ("zero", 64)]),
                        ("video.mp4", [("rand", 448)])]:
        with open(dst / name, "wb") as f:
            for kind, size in parts:
                for _ in range(size):
                    if kind == "rand":
                        f.write(rng.randbytes(mib))
                    elif kind == "zero":
                        f.write(bytes(mib))
                    else:
                        start = rng.randrange(len(text) - mib)
                        f.write(text[start:start + mib])


def make_small(dst, count=200_000, seed=3):
    """200,000 small files (0-8 KiB, mostly text) in nested directories."""
    rng = random.Random(seed)
    dirs = []
    for a in range(20):
        for b in range(25):
            d = dst / f"d{a:02}" / f"e{b:02}"
            d.mkdir(parents=True)
            dirs.append(d)
    pool = rng.randbytes(1 << 20)
    for i in range(count):
        d = dirs[i % len(dirs)]
        size = int(rng.expovariate(1 / 2000)) % 8192
        if i % 3 == 0:
            data = rng.randbytes(size)
        else:
            start = rng.randrange(len(pool) - size - 1)
            data = pool[start:start + size].hex().encode()[:size]
        (d / f"f{i:06}.txt").write_bytes(data)


DATASETS = {
    "src": ("source tree (/usr/share copy)", make_src_tree),
    "large": ("large files (2 GiB)", make_large),
    "small": ("200,000 small files", make_small),
}


def prepare(datasets):
    WORK.mkdir(exist_ok=True)
    for key in datasets:
        path = WORK / "data" / key
        if not (path / ".complete").exists():
            print(f"generating dataset {key}...", flush=True)
            if path.exists():
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            DATASETS[key][1](path)
            if key == "src":
                make_next_day(path, WORK / "data" / "src-day2")
            (path / ".complete").write_text("ok")


# --------------------------------------------------------------------------------------- tools

class Tool:
    name = ""

    def __init__(self):
        self.borg_counter = 0

    def cmd(self, phase, repo, data, target):
        raise NotImplementedError


class Aeon(Tool):
    name = "aeon"

    def cmd(self, phase, repo, data, target):
        a = [str(AEON), "-r", str(repo), "-q"]
        return {"init": a + ["init"],
                "backup": a + ["backup", str(data)],
                "restore": a + ["restore", "latest", "--target", str(target)],
                "check": a + ["check", "--read-data"]}[phase]


class AeonParity(Aeon):
    """Aeon with Reed-Solomon parity 10+2 (the default of `--parity`): what self-healing costs."""
    name = "aeon-parity"

    def cmd(self, phase, repo, data, target):
        c = super().cmd(phase, repo, data, target)
        return c + ["--parity", "10+2"] if phase == "init" else c


class AeonWriteOnly(Aeon):
    """Aeon backing up as a write-only client (its public file only, FORMAT.md 4b); restore and
    check with the full key: what a client that cannot read back costs."""
    name = "aeon-write-only"

    def cmd(self, phase, repo, data, target):
        c = super().cmd(phase, repo, data, target)
        public = f"{repo}.pub"
        if phase == "init":
            a = f"{AEON} -r {repo} -q"
            return ["sh", "-c", f"rm -f {public} {repo}.secret && {a} init && "
                    f"{a} key generate --public {public} && {a} key add --public {public} --write-only"]
        if phase == "backup":
            return c[:4] + ["--key-file", public] + c[4:]
        return c


class Restic(Tool):
    name = "restic"

    def cmd(self, phase, repo, data, target):
        a = ["restic", "-r", str(repo), "-q"]
        return {"init": a + ["init"],
                "backup": a + ["backup", str(data)],
                "restore": a + ["restore", "latest", "--target", str(target)],
                "check": a + ["check", "--read-data"]}[phase]


class Rustic(Tool):
    name = "rustic"

    def cmd(self, phase, repo, data, target):
        a = ["rustic", "-r", str(repo), "--no-progress"]
        return {"init": a + ["init"],
                "backup": a + ["backup", str(data)],
                "restore": a + ["restore", "latest", str(target)],
                "check": a + ["check", "--read-data"]}[phase]


class Borg(Tool):
    name = "borg"

    def cmd(self, phase, repo, data, target):
        if phase == "init":
            return ["borg", "init", "--encryption=repokey-blake2", str(repo)]
        if phase == "backup":
            self.borg_counter += 1
            return ["borg", "create", f"{repo}::a{self.borg_counter}", str(data)]
        if phase == "restore":
            # borg extracts relative to the working directory (set by the runner).
            return ["borg", "extract", f"{repo}::a{self.borg_counter}"]
        return ["borg", "check", "--verify-data", str(repo)]


TOOLS = {t.name: t for t in (Aeon, AeonParity, AeonWriteOnly, Restic, Rustic, Borg)}


def timed(argv, cwd=None):
    """Runs argv; returns (wall s, cpu s, peak RSS KiB)."""
    out = WORK / "time.out"
    full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", str(out)] + argv
    p = subprocess.run(full, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    if p.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
    wall, user, sys_, rss = out.read_text().split()[-4:]
    return float(wall), float(user) + float(sys_), int(rss)


def run_tool(tool, dataset, rep, rows):
    live = WORK / "live" / dataset
    repo = WORK / "repos" / f"{tool.name}-{dataset}"
    target = WORK / "restore"
    for p in (repo, target):
        if p.exists():
            shutil.rmtree(p)
    repo.parent.mkdir(parents=True, exist_ok=True)
    live.parent.mkdir(parents=True, exist_ok=True)
    # The same path for every tool, so that each finds its parent by path.
    subprocess.run(["rsync", "-a", "--delete", f"{WORK / 'data' / dataset}/", f"{live}/"], check=True)
    subprocess.run(tool.cmd("init", repo, live, target), env=ENV, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    size = du(live)

    def phase(name, argv, cwd=None):
        drop_caches()
        wall, cpu, rss = timed(argv, cwd)
        rows.append(dict(dataset=dataset, phase=name, tool=tool.name, rep=rep, wall_s=wall, cpu_s=cpu,
                         rss_kib=rss, data_bytes=size, repo_bytes=du(repo)))
        print(f"  {dataset:6} {name:14} {tool.name:7} rep {rep}: {wall:7.2f}s cpu {cpu:7.2f}s rss {rss // 1024:5} MiB", flush=True)

    phase("backup-first", tool.cmd("backup", repo, live, target))
    phase("backup-nochange", tool.cmd("backup", repo, live, target))
    if dataset == "src":
        subprocess.run(["rsync", "-a", "--delete", f"{WORK / 'data' / 'src-day2'}/", f"{live}/"], check=True)
        size = du(live)
        phase("backup-nextday", tool.cmd("backup", repo, live, target))
    target.mkdir()
    phase("restore", tool.cmd("restore", repo, live, target), cwd=target)
    phase("check-read-data", tool.cmd("check", repo, live, target))
    shutil.rmtree(target)
    shutil.rmtree(repo)
    if tool.name == "aeon":
        # For the pipeline-limit fraction: the first backup again, with the data in the page cache,
        # to set beside the limit measured with reads from the page cache.
        subprocess.run(tool.cmd("init", repo, live, target), env=ENV, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for f in live.rglob("*"):
            if f.is_file() and not f.is_symlink():
                with open(f, "rb") as fh:
                    while fh.read(1 << 20):
                        pass
        wall, cpu, rss = timed(tool.cmd("backup", repo, live, target))
        rows.append(dict(dataset=dataset, phase=WARM_FIRST, tool=tool.name, rep=rep, wall_s=wall, cpu_s=cpu,
                         rss_kib=rss, data_bytes=size, repo_bytes=du(repo)))
        print(f"  {dataset:6} {WARM_FIRST:14} {tool.name:7} rep {rep}: {wall:7.2f}s cpu {cpu:7.2f}s", flush=True)
        shutil.rmtree(repo)


# Aeon alone: a first backup from a warm page cache (not one of the compared phases).
WARM_FIRST = "backup-first-warm"


def median_rows(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["phase"], r["tool"]), []).append(r)
    out = {}
    for k, rs in groups.items():
        out[k] = {f: statistics.median(r[f] for r in rs) for f in ("wall_s", "cpu_s", "rss_kib", "repo_bytes", "data_bytes")}
    return out


def save_raw(rows):
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "raw.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)


def report(rows, tools, datasets, extra, run_line=None):
    save_raw(rows)
    med = median_rows(rows)
    peers = [t for t in tools if t != "aeon"]
    run_line = run_line or f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}."
    lines = ["# Aeon vs restic, borg, rustic", "", run_line, "",
             "Medians of the repetitions; ratios: time and RSS = peer / Aeon (above 1 means Aeon is better), "
             "repository = Aeon / peer (below 1 means Aeon is smaller).", ""]
    summary = []
    for ds in datasets:
        lines += [f"## {DATASETS[ds][0]}", "",
                  "| phase | " + " | ".join(f"{t} s" for t in tools) + " | Aeon MB/s | "
                  + " | ".join(f"×{p} time" for p in peers) + " | " + " | ".join(f"{t} RSS MiB" for t in tools)
                  + " | " + " | ".join(f"×{p} RSS" for p in peers) + " |",
                  "|" + "---|" * (1 + 2 * len(tools) + 1 + 2 * len(peers))]
        phases = [p for p in ("backup-first", "backup-nochange", "backup-nextday", "restore", "check-read-data")
                  if (ds, p, "aeon") in med]
        for ph in phases:
            a = med[(ds, ph, "aeon")]
            walls = [med[(ds, ph, t)]["wall_s"] for t in tools]
            rss = [med[(ds, ph, t)]["rss_kib"] / 1024 for t in tools]
            t_ratio = [med[(ds, ph, p)]["wall_s"] / a["wall_s"] for p in peers]
            r_ratio = [med[(ds, ph, p)]["rss_kib"] / a["rss_kib"] for p in peers]
            mbps = a["data_bytes"] / a["wall_s"] / 1e6
            lines.append(f"| {ph} | " + " | ".join(f"{w:.2f}" for w in walls) + f" | {mbps:.0f} | "
                         + " | ".join(f"{r:.2f}" for r in t_ratio) + " | " + " | ".join(f"{r:.0f}" for r in rss)
                         + " | " + " | ".join(f"{r:.2f}" for r in r_ratio) + " |")
            for p, tr, rr in zip(peers, t_ratio, r_ratio):
                summary.append(dict(dataset=ds, phase=ph, peer=p, time_ratio=round(tr, 3), rss_ratio=round(rr, 3),
                                    aeon_wall_s=a["wall_s"], peer_wall_s=med[(ds, ph, p)]["wall_s"],
                                    aeon_rss_kib=a["rss_kib"], peer_rss_kib=med[(ds, ph, p)]["rss_kib"],
                                    aeon_repo_bytes=a["repo_bytes"], peer_repo_bytes=med[(ds, ph, p)]["repo_bytes"],
                                    repo_ratio=round(a["repo_bytes"] / max(1, med[(ds, ph, p)]["repo_bytes"]), 3)))
        first = "backup-first"
        sizes = {t: med[(ds, first, t)]["repo_bytes"] for t in tools}
        lines += ["", "Repository after the first backup: " + ", ".join(f"{t} {sizes[t] / 1e6:.1f} MB" for t in tools)
                  + f" (data {med[(ds, first, 'aeon')]['data_bytes'] / 1e6:.1f} MB); Aeon / peer: "
                  + ", ".join(f"{p} {sizes['aeon'] / sizes[p]:.2f}" for p in peers), ""]
    lines += extra
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    if summary:  # no peers, no ratios (e.g. the dataset-generating run of Aeon alone)
        with open(RESULTS / "latest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
            w.writeheader()
            w.writerows(summary)
    print("\n".join(lines))


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal")), "0")
    return f"{cpu}, {os.cpu_count()} cores, {int(mem) // 1024 // 1024} GiB, {platform.release()}"


def versions(tools):
    out = []
    for t, argv in (("aeon", [str(AEON), "--version"]), ("restic", ["restic", "version"]),
                    ("rustic", ["rustic", "--version"]), ("borg", ["borg", "--version"])):
        if t in tools:
            out.append(subprocess.run(argv, capture_output=True, text=True).stdout.strip().splitlines()[0])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--datasets", default="src,large,small")
    ap.add_argument("--tools", default="aeon,restic,rustic,borg")
    ap.add_argument("--prepare-only", action="store_true", help="generate the datasets and stop")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite latest.md and latest.csv from raw.csv and limits.md, running nothing")
    args = ap.parse_args()
    datasets = args.datasets.split(",")
    tools = args.tools.split(",")
    if args.report_only:
        final_report(load_raw(), tools, datasets, rewritten_run_line())
        return
    prepare(datasets)
    if args.prepare_only:
        return
    (RESULTS).mkdir(exist_ok=True)
    (RESULTS / "machine.txt").write_text(machine() + "\n" + "\n".join(versions(tools)) + "\n")
    rows, limit_runs = [], {}
    for ds in datasets:
        for rep in range(1, args.reps + 1):
            # The limit is measured in every repetition, beside the tools: a virtual machine's
            # speed drifts by tens of percent within a run, and a limit measured once, before
            # the tools, would be compared with backups made on a faster or slower machine.
            if "aeon" in tools:
                limit_runs.setdefault(ds, []).append(measure_limit(ds))
                save_limits(limit_runs)
            order = tools if rep % 2 else list(reversed(tools))  # A B C D, D C B A, ...
            for t in order:
                run_tool(TOOLS[t](), ds, rep, rows)
                save_raw(rows)  # a run cut short still leaves its measurements
        done = datasets[: datasets.index(ds) + 1]
        report(rows, tools, done, ["(partial: datasets still running)"] if done != datasets else [])
    final_report(rows, tools, datasets)


LIMIT_EXAMPLE = ROOT / "target" / "release" / "examples" / "pipeline_limit"
IN_MEMORY_ROW = "| chunk+hash"


def measure_limit(dataset):
    """One run of the in-memory pipeline limit on `dataset` (its Markdown section)."""
    out = subprocess.run([str(LIMIT_EXAMPLE), str(WORK / "data" / dataset), dataset],
                         check=True, capture_output=True, text=True, env=ENV)
    return out.stdout.strip() + "\n"


def row_figure(section, prefix):
    """The last cell (the 2-core MB/s) of the row of a limit section starting with `prefix`;
    None where the row or its figure is missing."""
    row = next((l for l in section.splitlines() if l.startswith(prefix)), None)
    try:
        return float(row.strip("| ").split("|")[-1]) if row else None
    except ValueError:
        return None


def in_memory_figure(section):
    """The 2-core in-memory figure (MB/s) of one limit section, 0 where missing."""
    return row_figure(section, IN_MEMORY_ROW) or 0.0


def save_limits(limit_runs):
    """limits.md: per dataset, the repetition whose in-memory figure is the median (all its
    rows from one run, so they stay consistent with each other), every repetition's figure
    listed; then the index measurement run.sh left in index.md."""
    parts = ["## In-memory pipeline limit", "",
             "Measured in each repetition just before the tools run; shown: the repetition with the "
             "median in-memory figure.", ""]
    for ds, sections in limit_runs.items():
        ranked = sorted(sections, key=in_memory_figure)
        median = ranked[(len(ranked) - 1) // 2]
        figures = ", ".join(f"{in_memory_figure(x):.0f}" for x in sections)
        parts += [median.rstrip("\n"), "",
                  f"In-memory figure (2 cores) of each repetition, MB/s: {figures}.", ""]
    index = RESULTS / "index.md"
    if index.exists():
        parts += [index.read_text().strip(), ""]
    (RESULTS / "limits.md").write_text("\n".join(parts))


def load_raw():
    """The measurements of the last run, as `save_raw` wrote them."""
    with open(RESULTS / "raw.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["rep"] = int(r["rep"])
        for k in ("wall_s", "cpu_s", "rss_kib", "data_bytes", "repo_bytes"):
            r[k] = float(r[k]) if "." in r[k] else int(r[k])
    return rows


def final_report(rows, tools, datasets, run_line=None):
    extra = ["## Versions", ""] + [f"- {v}" for v in versions(tools)] + [""]
    limits = RESULTS / "limits.md"
    if limits.exists():
        limits_md = limits.read_text()
        extra += limits_md.splitlines() + limit_fraction(rows, limits_md)
    report(rows, tools, datasets, extra, run_line)


def rewritten_run_line():
    """The run's own "Run ... on ..." line from latest.md, marked as rewritten now."""
    old = (RESULTS / "latest.md").read_text().splitlines() if (RESULTS / "latest.md").exists() else []
    line = next((l for l in old if l.startswith("Run ")), None)
    if line is None:
        return None
    return line.split(" (report rewritten")[0].rstrip(".") + \
        f" (report rewritten {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from raw.csv and limits.md)."


def limit_fraction(rows, limits_md):
    """Aeon's first backups against the pipeline limits of the same data (bench/results/limits.md)."""
    med = median_rows(rows)
    heading = ["", "### Aeon's first backup against the limit", "",
               "The target: a cold first backup at 60% or more of the in-memory limit. No backup reading a cold "
               "cache passes the bound: the lower of the data read alone with many reads in flight and the CPU work "
               "no such backup avoids (reading alone plus the stages on every core, spread without loss over the "
               "cores; where limits.md lacks that row, the stages' CPU alone). So bound / in memory is the most "
               "any tool could reach on this machine and this data.", "",
               "| dataset | in memory: limit MB/s | cold: Aeon MB/s | **Aeon cold / in memory** "
               "| bound: min(read alone, CPU work) MB/s | bound / in memory | Aeon cold / bound |",
               "|---|---|---|---|---|---|---|"]
    target_rows, in_line_rows = [], []
    in_line_heading = ["", "Against the limit's own pipelines, whose readers work in line (read, then the stages): cold, "
               "they match the compared first backup and can be beaten; with reads from the page cache, Aeon's first "
               "backup of a warm cache (measured for this only). The last column is the most of the in-memory figure "
               "that a backup reading each file from the page cache, and doing nothing but the stages, can reach.",
               "", "| dataset | cold: Aeon MB/s | limit MB/s | fraction | warm: Aeon MB/s | limit MB/s | fraction "
               "| Aeon warm / in memory | page-cache limit / in memory |", "|---|---|---|---|---|---|---|---|---|"]
    for ds in DATASETS:
        section = limits_md.split(f"### {ds}\n", 1)
        cold_run, warm_run = med.get((ds, "backup-first", "aeon")), med.get((ds, WARM_FIRST, "aeon"))
        if len(section) < 2 or cold_run is None or warm_run is None:
            continue
        body = section[1].split("\n#", 1)[0]

        def limit(prefix):
            return row_figure(body, prefix)
        memory, warm, cold = limit(IN_MEMORY_ROW), limit("| read (page cache)"), limit("| read (cold cache)")
        if None in (memory, warm, cold):
            continue
        a_cold = cold_run["data_bytes"] / cold_run["wall_s"] / 1e6
        a_warm = warm_run["data_bytes"] / warm_run["wall_s"] / 1e6
        # No cold-cache pipeline beats the disk read alone or its CPU work. Older limits.md
        # files lack the CPU of reading: the stages' alone (the faster of the two measures: on
        # a noisy machine the one with reads can come out higher) is then an optimistic bound.
        disk, cpu_work = limit("| read alone"), limit("| CPU work")
        bound = min(disk, cpu_work or max(memory, warm)) if disk else None
        bound_cells = (f"{bound:.0f} | {100 * bound / memory:.0f}% | {100 * a_cold / bound:.0f}%"
                       if bound else "— | — | —")
        target_rows.append(f"| {ds} | {memory:.0f} | {a_cold:.0f} | **{100 * a_cold / memory:.0f}%** | {bound_cells} |")
        in_line_rows.append(f"| {ds} | {a_cold:.0f} | {cold:.0f} | {100 * a_cold / cold:.0f}% | {a_warm:.0f} | "
                       f"{warm:.0f} | {100 * a_warm / warm:.0f}% | {100 * a_warm / memory:.0f}% "
                       f"| {100 * warm / memory:.0f}% |")
    if not target_rows:
        return []
    return heading + target_rows + in_line_heading + in_line_rows + [""]


if __name__ == "__main__":
    main()
