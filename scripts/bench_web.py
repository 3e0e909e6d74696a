#!/usr/bin/env python3
"""Measure the monitor page's cost (issue 13): memory it adds, idle CPU, page times.

For each mode (the page off, then on) the script

1. makes a small project tree (cached under ``--data``) and a backup dir whose catalog already
   holds ``--snapshots`` snapshots (default 1,000, one an hour back from now, each recorded as
   copied to a folder destination, with a finished run each), so the page has a full table
   and chart to draw;
2. starts the real `siip-watcher start` (this repository's code) and waits until it is up and
   idle (the newest snapshot is an hour old, so no run is due);
3. measures from ``/proc/PID``: CPU over ``--idle`` seconds with nobody connected, and RSS;
4. with the page on: times ``--requests`` GETs of ``/``, ``/view``, ``/api/status`` and
   ``/metrics`` one after another over HTTP on 127.0.0.1 (median and slowest), then RSS and
   idle CPU again once nobody asks any more.

The memory the page adds is RSS with the page on (after the requests) minus RSS with it off.

Example::

    .venv/bin/python scripts/bench_web.py                      # 1,000 snapshots, 60 s idle
    .venv/bin/python scripts/bench_web.py --snapshots 1000 --idle 30 --json

Linux only (it reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# the same tree, /proc readers and waits as the service's own benchmark
from scripts.bench_service import (  # noqa: E402
    generate,
    proc_cpu_seconds,
    proc_memory_mb,
    read_state,
    wait_for,
)
from watcher.backup.report import RunReport, SnapshotInfo  # noqa: E402
from watcher.state.catalog import Catalog  # noqa: E402

PATHS = ("/", "/view", "/api/status", "/metrics")
TREE_FILES = 2000
SNAPSHOT_BYTES = 250_000_000


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill_catalog(local: Path, count: int, name: str, *, delta_every: int = 0,  # noqa: PLR0913
                 failed_every: int = 0, copied_to: str = "folder", size: int = SNAPSHOT_BYTES,
                 seconds: float = 40.0) -> None:
    """``count`` past snapshots an hour apart, each copied to ``copied_to`` and each with its
    finished run; with ``delta_every`` N, all but every Nth are deltas of the full before
    them (a tenth of its size); with ``failed_every`` N, every Nth run failed instead. A
    full snapshot is about ``size`` bytes and its run takes about ``seconds``."""
    catalog = Catalog(local)
    now = datetime.now(UTC).replace(microsecond=0)
    base: str | None = None
    for i in range(count, 0, -1):
        at = now - timedelta(hours=i)
        run_id = catalog.start_run("interval", at)
        report = RunReport(name=name, trigger="interval", started_at=at)
        if not (failed_every and i % failed_every == 0):
            delta = bool(delta_every) and base is not None and i % delta_every != 0
            stored = (size + i * 1000) // (10 if delta else 1)
            info = SnapshotInfo(id=f"{name}-{at:%Y%m%dT%H%M%SZ}", file=str(local / "gone"),
                                created_at=at, size=stored, sha256="0" * 64, files=TREE_FILES,
                                bytes_in=size * 2, kind="delta" if delta else "full",
                                base=base if delta else None)
            base = base if delta else info.id
            catalog.add_snapshot(info, trigger="interval", duration=seconds)
            catalog.set_copy(info.id, copied_to, "uploaded")
            report.snapshot = info
        took = seconds * (0.2 if report.snapshot is None else 1) * (1 + i % 20 / 20)
        report.finish(at + timedelta(seconds=took))
        catalog.finish_run(run_id, report, report.status)


def write_config(path: Path, root: Path, local: Path, folder: Path, *, web: bool,
                 port: int) -> None:
    path.write_text(
        f'[source]\nroot = "{root}"\ndatabases = ["instance/siip_database.db"]\n'
        f'exclude = [".complete"]\n[local]\ndir = "{local}"\n'
        f'[schedule]\ninterval_hours = 24\n'
        f'[retention]\nkeep_last = 10000\n'     # keep the made-up history whole
        f'[folder]\nenabled = true\npath = "{folder}"\n'
        f'[web]\nenabled = {"true" if web else "false"}\nlisten = "127.0.0.1:{port}"\n',
        encoding="utf-8")


def timed_gets(url: str, requests: int) -> dict[str, Any]:
    """Median and slowest time of ``requests`` GETs of ``url``, in ms, and the body size."""
    times = []
    size = 0
    for _ in range(requests):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as answer:
            size = len(answer.read())
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1),
            "bytes": size}


def idle(local: Path, pid: int) -> bool:
    """The service wrote its state and runs nothing."""
    state = read_state(local)
    return state.get("pid") == pid and state.get("running_since") is None


def idle_cpu(pid: int, seconds: float) -> float:
    """CPU over ``seconds`` as a percentage of one core."""
    cpu0, wall0 = proc_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return round(100 * (proc_cpu_seconds(pid) - cpu0) / (time.monotonic() - wall0), 3)


def bench(web: bool, args: argparse.Namespace) -> dict[str, Any]:
    root = args.data / f"tree-{TREE_FILES}"
    generate(root, TREE_FILES, args.seed)
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    local, folder = work / "backups", work / "nas"
    local.mkdir(mode=0o700)
    folder.mkdir()
    fill_catalog(local, args.snapshots, "siip")
    port = free_port()
    config = work / "siip-watcher.toml"
    write_config(config, root, local, folder, web=web, port=port)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("JOURNAL_STREAM", None)
    log = open(work / "service.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([args.python, "-m", "watcher", "-c", str(config), "start"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=work)
    mode = "page on" if web else "page off"
    result: dict[str, Any] = {"mode": mode, "snapshots": args.snapshots}
    try:
        print(f"[{mode}] waiting for the service ...", file=sys.stderr)
        wait_for(lambda: idle(local, proc.pid), "the service to be up and idle", 600, proc)
        time.sleep(2)  # let the allocator settle
        print(f"[{mode}] idle CPU over {args.idle:g} s ...", file=sys.stderr)
        result["idle_cpu_percent"] = idle_cpu(proc.pid, args.idle)
        result["rss_idle_mb"] = round(proc_memory_mb(proc.pid)[0], 1)
        if web:
            base = f"http://127.0.0.1:{port}"
            result["catalog_snapshots"] = json.loads(
                urllib.request.urlopen(base + "/api/status", timeout=30).read())["snapshots"]
            result["requests"] = {path: timed_gets(base + path, args.requests)
                                  for path in PATHS}
            result["rss_after_requests_mb"] = round(proc_memory_mb(proc.pid)[0], 1)
            print(f"[{mode}] idle CPU after the page closed, {args.idle:g} s ...",
                  file=sys.stderr)
            result["idle_cpu_after_percent"] = idle_cpu(proc.pid, args.idle)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            result["exit_code"] = proc.wait(120)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--snapshots", type=int, default=1000)
    p.add_argument("--idle", type=float, default=60.0, help="seconds of idle CPU measurement")
    p.add_argument("--requests", type=int, default=50, help="GETs of each path")
    p.add_argument("--data", type=Path, default=REPO / "bench-data")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    off, on = bench(False, args), bench(True, args)
    added = round(on["rss_after_requests_mb"] - off["rss_idle_mb"], 1)
    if args.json:
        print(json.dumps({"off": off, "on": on, "added_mb": added}, indent=2))
        return 0
    print(f"snapshots in the catalog: {on['catalog_snapshots']}")
    print(f"idle CPU, page off:                 {off['idle_cpu_percent']:.3f} % of a core")
    print(f"idle CPU, page on, never opened:    {on['idle_cpu_percent']:.3f} %")
    print(f"idle CPU, page on, after requests:  {on['idle_cpu_after_percent']:.3f} %")
    print(f"RSS idle, page off:                 {off['rss_idle_mb']:.1f} MB")
    print(f"RSS idle, page on:                  {on['rss_idle_mb']:.1f} MB")
    print(f"RSS after the requests, page on:    {on['rss_after_requests_mb']:.1f} MB "
          f"(+{added:.1f} MB over page off)")
    print(f"{'path':<14}{'median ms':>10}{'max ms':>10}{'bytes':>10}")
    for path, r in on["requests"].items():
        print(f"{path:<14}{r['median_ms']:>10.1f}{r['max_ms']:>10.1f}{r['bytes']:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
