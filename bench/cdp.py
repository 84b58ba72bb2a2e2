#!/usr/bin/env python3
"""Continuous data protection under load: RPO and idle cost of `aeon agent` with `watch = true`.

A copy of the benchmark's 200,000-file tree is watched; a writer changes 1,000 files a minute
for a few minutes; each write's RPO is the time from the write until the end of the first
recovery point that started after it (and so contains it). Then the agent idles, and the CPU it
uses is read from /proc. Usage: bench/cdp.py [--minutes 3] [--delay 10s] [--method inotify|fanotify];
needs bench/run.sh's
data (bench/work/data/small) and a release build.
"""
import argparse, json, os, random, shutil, signal, statistics, subprocess, sys, tempfile, time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AEON = ROOT / "target" / "release" / "aeon"


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=3)
    ap.add_argument("--delay", default="10s")
    ap.add_argument("--rate", type=int, default=1000, help="file changes per minute")
    ap.add_argument("--idle", type=int, default=60, help="seconds of idle measurement")
    ap.add_argument("--method", default="inotify", choices=["inotify", "fanotify"])
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aeon-cdp-"))
    src, repo, state = work / "src", work / "repo", work / "state"
    print("copying the 200,000-file tree...", flush=True)
    subprocess.run(["cp", "-a", str(ROOT / "bench/work/data/small"), str(src)], check=True)
    files = [p for p in src.rglob("*.txt")]
    (work / "pw").write_text("bench\n")
    config = work / "aeon.toml"
    config.write_text(f'[live]\nrepository = "{repo}"\npassword_file = "{work / "pw"}"\n'
                      f'sources = ["{src}"]\nwatch = true\nwatch_delay = "{a.delay}"\n'
                      f'watch_method = "{a.method}"\n')
    env = dict(os.environ, AEON_CONFIG=str(config), AEON_PROFILE="live", XDG_CACHE_HOME=str(work / "cache"))
    env.pop("AEON_PASSWORD", None); env.pop("AEON_REPOSITORY", None)
    subprocess.run([str(AEON), "-q", "init"], env=env, check=True)
    log = open(work / "agent.log", "w")
    agent = subprocess.Popen([str(AEON), "agent", "--log-format", "json", "--state-dir", str(state)],
                             env=env, stderr=log)

    def points():
        out = subprocess.run([str(AEON), "--json", "snapshots"], env=env, capture_output=True, check=True)
        return json.loads(out.stdout)

    print("waiting for the first (full) backup...", flush=True)
    while not points():
        time.sleep(1)
    rng = random.Random(7)
    writes = []
    interval = 60.0 / a.rate
    end = time.time() + a.minutes * 60
    print(f"writing {a.rate} changes a minute for {a.minutes} minutes...", flush=True)
    next_at = time.time()
    while time.time() < end:
        f = rng.choice(files)
        with open(f, "ab") as fh:
            fh.write(b"x")
        writes.append(time.time())
        next_at += interval
        time.sleep(max(0, next_at - time.time()))
    last_write = writes[-1]
    print("waiting for the last write to be protected...", flush=True)
    while True:
        ps = points()
        if any(datetime.fromisoformat(p["time"]).timestamp() >= last_write for p in ps):
            break
        time.sleep(1)
    idle_start = cpu_seconds(agent.pid)
    time.sleep(a.idle)
    idle_cpu = cpu_seconds(agent.pid) - idle_start
    agent.send_signal(signal.SIGTERM)
    agent.wait()
    ps = []
    for p in points():
        shown = json.loads(subprocess.run([str(AEON), "--json", "cat", "snapshot", p["id"]], env=env,
                                          capture_output=True, check=True).stdout)
        s = shown["summary"]
        ps.append((datetime.fromisoformat(s["backup_start"]).timestamp(),
                   datetime.fromisoformat(s["backup_end"]).timestamp(), s))
    ps.sort(key=lambda x: x[0])
    rpos = []
    for w in writes:
        after = [p for p in ps if p[0] >= w]
        if after:
            rpos.append(after[0][1] - w)
    cdp_points = ps[1:]
    durations = [e - s for s, e, _ in cdp_points]
    result = {
        "files": len(files), "writes": len(writes), "delay": a.delay, "method": a.method, "points": len(ps),
        "rpo_median_s": round(statistics.median(rpos), 2), "rpo_p95_s": round(sorted(rpos)[int(len(rpos) * 0.95) - 1], 2),
        "rpo_max_s": round(max(rpos), 2),
        "cdp_backup_median_s": round(statistics.median(durations), 2) if durations else None,
        "cdp_backup_files_changed_median": statistics.median(s["files_changed"] for _, _, s in cdp_points) if cdp_points else None,
        "idle_cpu_percent": round(idle_cpu * 100 / a.idle, 3),
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
