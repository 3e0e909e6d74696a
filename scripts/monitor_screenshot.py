#!/usr/bin/env python3
"""Take the README's picture of the monitor page (docs/monitor.png) from a real service.

A small project tree and a catalog with a made-up month of history (40 hourly runs, mostly
deltas, one failed; `scripts/bench_web.py`'s ``fill_catalog``), then the real `siip-watcher
start` of this repository with its page on 127.0.0.1 and a folder destination whose share is
"not mounted", so the page has something to say under "what to check". Headless Chromium
(Debian's ``/usr/bin/chromium``, through Playwright, as the browser tests use it) presses
"Respaldar ahora", waits for the new snapshot to appear, and saves the page.

    .venv/bin/python scripts/monitor_screenshot.py                 # docs/monitor.png
    .venv/bin/python scripts/monitor_screenshot.py -o /tmp/page.png --lang en
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from playwright.sync_api import sync_playwright  # noqa: E402

from scripts.bench_service import generate, wait_for  # noqa: E402
from scripts.bench_web import fill_catalog, free_port, idle, write_config  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
RUNS = 40
WAIT_MS = 60_000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "monitor.png")
    p.add_argument("--lang", choices=("es", "en"), default="es")
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="monitor-shot-"))
    root, local = work / "siip", work / "backups"
    generate(root, 200, seed=5)
    local.mkdir(mode=0o700)
    # sizes and times like this small tree's own snapshot, so the new run fits the chart
    fill_catalog(local, RUNS, "siip", delta_every=6, failed_every=17, size=4_800_000,
                 seconds=1.0)
    port = free_port()
    config = work / "siip-watcher.toml"
    # the NAS share is not mounted: the new snapshot's copy waits in the queue
    write_config(config, root, local, work / "nas-not-mounted", web=True, port=port)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("JOURNAL_STREAM", None)
    log = open(work / "service.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen([args.python, "-m", "watcher", "-c", str(config), "start"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=work)
    try:
        wait_for(lambda: idle(local, proc.pid), "the service", 120, proc)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/?lang={args.lang}")
            first = page.locator("table.snapshots tbody tr").first.get_attribute("data-id")
            page.click("#backup")
            page.wait_for_function(
                "old => { const r = document.querySelector('table.snapshots tbody tr');"
                " return r && r.dataset.id !== old; }", arg=first, timeout=WAIT_MS)
            page.wait_for_function(
                "() => document.getElementById('backup-note').textContent.includes(':')",
                timeout=WAIT_MS)
            # the first screenful and a little more: the table goes on for 40 rows
            page.screenshot(path=str(args.output), clip={"x": 0, "y": 0, "width": 1000,
                                                         "height": 1500}, full_page=True)
            browser.close()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(120)
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"saved {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
