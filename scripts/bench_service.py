#!/usr/bin/env python3
"""Measure the service (`siip-watcher start`): idle CPU, memory, and change-to-run latency.

Issue 3, section Measured. For each tree size (default 15,000 and 100,000 files) the script

1. generates (once, cached under ``--data``) a project tree: small files in folders of 20, like
   the photos and code of a SIIP install, plus a WAL-mode SQLite database;
2. starts the real `siip-watcher start` (the repository's code, the real backup) with the
   backup dir outside the tree, and waits until its first snapshot is stored and it is idle;
3. measures, from ``/proc/PID``:
   - **idle CPU**: user+system CPU time over ``--idle`` seconds (default 60) with nothing
     changing, as a percentage of one core (target: under 1% at 15,000 files);
   - **RSS** once idle, and the peak (VmHWM) which includes the first snapshot (target: under
     120 MB at 100,000 files);
   - **latency**: ``--bursts`` times, write a burst of ``--burst`` files and time from the last
     write to the start of the run it causes, as the service records it (``running_since`` in
     its state file); reported minus ``debounce_seconds`` (target: under 1 s);
4. prints a table, or one JSON document with ``--json``.

Example::

    .venv/bin/python scripts/bench_service.py                       # 15k and 100k files
    .venv/bin/python scripts/bench_service.py --files 15000 --idle 60 --json
    .venv/bin/python scripts/bench_service.py --files 15000 --watch polling --idle 20

Linux only (it reads /proc). Standard library only; siip-watcher runs from this repository.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FILES_PER_DIR = 20
STATE_FILE = "siip-watcher.service.json"


def generate(root: Path, files: int, seed: int) -> None:
    """A tree of ``files`` small files (0.5-4 KB) in folders of 20, and a WAL database."""
    marker = root / ".complete"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    rnd = random.Random(seed)
    (root / "instance").mkdir(parents=True)
    for i in range(files):
        group, sub = i // (FILES_PER_DIR * 50), i // FILES_PER_DIR
        folder = root / "static" / f"d{group:03d}" / f"s{sub:05d}"
        if i % FILES_PER_DIR == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"foto {i}.jpg").write_bytes(rnd.randbytes(rnd.randint(512, 4096)))
    db = sqlite3.connect(root / "instance" / "siip_database.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE personas (id INTEGER PRIMARY KEY, nombre TEXT, datos BLOB)")
    with db:
        db.executemany("INSERT INTO personas (nombre, datos) VALUES (?, ?)",
                       [(f"persona {i}", rnd.randbytes(200)) for i in range(20_000)])
    db.close()
    marker.write_text("ok\n")


def write_config(path: Path, root: Path, local: Path, *, debounce: float, heavy: int,
                 watch: str) -> None:
    path.write_text(
        f'[source]\nroot = "{root}"\ndatabases = ["instance/siip_database.db"]\n'
        f'exclude = [".complete"]\n'
        f'[local]\ndir = "{local}"\n'
        f'[schedule]\ninterval_hours = 24\ndebounce_seconds = {debounce}\n'
        f'max_delay_seconds = {max(60.0, debounce * 10)}\nheavy_change_events = {heavy}\n'
        f'watch = "{watch}"\nstop_timeout_seconds = 30\n'
        f'[compression]\nlevel = 3\n[log]\nlevel = "info"\n', encoding="utf-8")


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def proc_memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def read_state(local: Path) -> dict[str, Any]:
    try:
        return json.loads((local / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def wait_for(predicate: Any, what: str, timeout: float, proc: subprocess.Popen[bytes]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited ({proc.returncode}) while waiting for {what}")
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out after {timeout:g} s waiting for {what}")


def settled(local: Path) -> bool:
    s = read_state(local)
    return bool(s.get("last_success")) and s.get("running_since") is None \
        and s.get("dirty_since") is None and s.get("next_check_at") == s.get("next_interval_at")


# one measurement's steps in order: first snapshot, idle CPU, bursts of changes, stop
def bench(files: int, args: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915
    root = args.data / f"tree-{files}"
    print(f"[{files} files] generating {root} (cached) ...", file=sys.stderr)
    generate(root, files, args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-service-"))
    local = work / "backups"
    config = work / "siip-watcher.toml"
    write_config(config, root, local, debounce=args.debounce, heavy=args.heavy, watch=args.watch)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("JOURNAL_STREAM", None)
    log = open(work / "service.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([args.python, "-m", "watcher", "-c", str(config), "start"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=work)
    result: dict[str, Any] = {"files": files, "watch": args.watch}
    try:
        print(f"[{files} files] waiting for the first snapshot ...", file=sys.stderr)
        t0 = time.monotonic()
        wait_for(lambda: settled(local), "the first snapshot", 1800, proc)
        result["first_snapshot_seconds"] = round(time.monotonic() - t0, 1)
        result["watch_used"] = read_state(local).get("watch")
        result["rss_peak_first_snapshot_mb"] = round(proc_memory_mb(proc.pid)[1], 1)
        time.sleep(2)  # let the allocator and the page cache settle

        print(f"[{files} files] idle CPU over {args.idle:g} s ...", file=sys.stderr)
        cpu0, wall0 = proc_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle)
        cpu1, wall1 = proc_cpu_seconds(proc.pid), time.monotonic()
        result["idle_cpu_percent"] = round(100 * (cpu1 - cpu0) / (wall1 - wall0), 3)
        result["idle_seconds"] = round(wall1 - wall0, 1)
        result["rss_idle_mb"] = round(proc_memory_mb(proc.pid)[0], 1)

        latencies = []
        for b in range(args.bursts):
            folder = root / "static" / f"bench-burst-{b}"
            folder.mkdir(exist_ok=True)
            runs_before = read_state(local).get("running_since")
            for i in range(args.burst):
                (folder / f"new {i}.jpg").write_bytes(os.urandom(1024))
            last_write = time.time()
            started = wait_for(lambda rb=runs_before: (s := read_state(local)).get(
                "running_since") not in (None, rb) and s["running_since"],
                "the burst's run", 120, proc)
            latencies.append(datetime.fromisoformat(started).timestamp() - last_write)
            wait_for(lambda: settled(local), "the burst's run to end", 600, proc)
            shutil.rmtree(folder)  # counted as a change too: let that run finish as well
            wait_for(lambda: read_state(local).get("dirty_since"), "the cleanup to be seen",
                     30, proc)
            wait_for(lambda: settled(local), "the cleanup run to end", 600, proc)
        over = [lat - args.debounce for lat in latencies]
        result["latency_over_debounce_seconds"] = {
            "median": round(statistics.median(over), 3), "max": round(max(over), 3),
            "all": [round(x, 3) for x in over]}
        rss, hwm = proc_memory_mb(proc.pid)
        result["rss_after_bursts_mb"] = round(rss, 1)
        result["rss_peak_mb"] = round(hwm, 1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            result["exit_code"] = proc.wait(120)
        log.close()
        if args.keep:
            print(f"[{files} files] kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, action="append",
                   help="tree size in files (repeatable; default 15000 and 100000)")
    p.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "siip-bench-service",
                   help="where generated trees are cached")
    p.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    p.add_argument("--bursts", type=int, default=3, help="bursts for the latency measurement")
    p.add_argument("--burst", type=int, default=300, help="files written per burst")
    p.add_argument("--debounce", type=float, default=2.0, help="schedule.debounce_seconds")
    p.add_argument("--heavy", type=int, default=100, help="schedule.heavy_change_events")
    p.add_argument("--watch", default="auto", choices=["auto", "native", "polling"])
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--python", default=str(REPO / ".venv" / "bin" / "python"),
                   help="interpreter with siip-watcher's dependencies")
    p.add_argument("--keep", action="store_true", help="keep the backup dir and the log")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    args = p.parse_args()
    sizes = args.files or [15_000, 100_000]
    results = [bench(n, args) for n in sizes]
    doc = {"cores": os.cpu_count(), "python": sys.version.split()[0],
           "debounce_seconds": args.debounce, "burst_files": args.burst, "results": results}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{'files':>8} {'watch':>8} {'idle CPU %':>11} {'RSS idle MB':>12} "
          f"{'peak 1st run MB':>16} {'RSS after bursts MB':>20} {'peak MB':>8} "
          f"{'latency-debounce s (median/max)':>32}")
    for r in results:
        lat = r["latency_over_debounce_seconds"]
        print(f"{r['files']:>8} {r['watch_used']:>8} {r['idle_cpu_percent']:>11.3f} "
              f"{r['rss_idle_mb']:>12.1f} {r['rss_peak_first_snapshot_mb']:>16.1f} "
              f"{r['rss_after_bursts_mb']:>20.1f} {r['rss_peak_mb']:>8.1f} "
              f"{lat['median']:>20.3f} / {lat['max']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
