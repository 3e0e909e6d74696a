#!/usr/bin/env python3
"""Benchmark the Drive upload (issue 4, section Measured) against the local Drive server.

Three figures, each against ``fakedrive`` (our Drive API server) on 127.0.0.1:

1. **Throughput**: ``GoogleDriveDestination.put`` of a file of ``--size-mib`` incompressible
   bytes (resumable protocol, ``--chunk-mib`` chunks, md5 of the file, exactly-once
   lookup, verification) against a plain HTTP PUT of the same bytes to the same server
   (``http.client``, 1 MiB blocks). The server runs in its own process and keeps only the md5
   of what it receives (so a 1 GB upload does not fill its memory); it hashes the plain PUT
   too, so both sides pay the same. Best of ``--repeat`` runs each, interleaved. Target: our
   throughput at least 0.8x the plain PUT's.
2. **Bytes re-sent after a dropped connection**: a ``--drop-size-mib`` upload (at least four
   chunks) whose server drops the connection half-way through the third chunk, keeping what
   arrived in whole 256 KiB units; the uploader's own count of chunk bytes put on the wire,
   minus the file size. Target: at most one chunk.
3. **Peak memory**: the upload runs in a child process that resets its peak RSS
   (``/proc/self/clear_refs``, Linux) after the imports and the setup, then reports ``VmHWM``.
   Target: peak at most one chunk + 50 MB above the RSS before the upload.

Each run also reports how many cores other processes used meanwhile (``/proc/stat`` minus
the client's and the server's CPU): on a shared machine that, not the code, often decides
the ratio, so the ratio is also given over the quiet runs alone (``--quiet-below``).

With ``--slow RATE:SIZE`` (repeatable) it measures slow uplinks instead (issue 10): the
server, in this process, reads each connection's bodies at RATE (``DriveState.read_rate``),
and a file of SIZE goes up once by a plain HTTP PUT and once by
``GoogleDriveDestination.put`` with the production settings (16 MiB chunks, 60 s timeout,
the production retries). Reported: each one's time against the pure transfer time
(SIZE / RATE), the chunk requests that timed out, and the bytes re-sent (chunk bytes that
reached the server beyond the file's size). On loopback Linux lets a sender queue up to
4 MiB in its socket, which hides a whole chunk's worth of a slow link from the client's
timeout; a real slow uplink's TCP window keeps that small, so the client sockets of this
process queue at most ``--client-sndbuf`` bytes (both the plain PUT's and ours). An
upload that has taken ``--deadline`` times the pure transfer time is stopped and reported
as such. Targets: 3 MB over 40 KiB/s in at most 1.3x the pure transfer time; over 1 Mbit/s,
at most one chunk re-sent per timeout.

With ``--encrypt`` it measures encrypted copies instead (issue 11): the same file (``--archive``,
for example the 1x snapshot of scripts/bench_snapshot.py, else ``--size-mib`` of random bytes)
goes up to the local Drive server once as it is and once through the upload queue's
encryption, ``sealed_archive`` (age, streaming, into ``<archive>.age``) then ``put`` of the
encrypted file, interleaved ``--repeat`` times, each in a child process of its own. Reported:
each one's wall time (the encryption alone too) and peak RSS above the RSS before the upload.
``--uplink RATE`` has the server read no faster than RATE, as a real uplink would. Targets:
encryption adds at most 10% wall time and 64 MiB memory.

With ``--rclone`` it measures the rclone destination instead (issue 12): the file
(``--archive``, the 1x snapshot archive; else ``--size-mib`` of random bytes) goes to
``rclone serve webdav`` on 127.0.0.1 (with credentials, as in the tests), once by a plain
``rclone copyto`` and once by ``RcloneDestination.put`` in a child process (its temporary
name, its check and sidecar, its rename: what the upload queue calls), interleaved, the order
swapped each round, ``--repeat`` rounds. Reported: throughput of each (best and median),
their ratio, the peak RSS of siip-watcher's own process (``VmHWM`` after a reset, as above)
and of the rclone processes it ran. Targets: at least 0.9x the plain copyto's throughput;
siip-watcher's own peak under 100 MB.

Examples (the figures in docs/benchmarks.md (part 3))::

    .venv/bin/python scripts/bench_upload.py --size-mib 1024 --chunk-mib 16 \
        --drop-size-mib 64 --repeat 8
    .venv/bin/python scripts/bench_upload.py --slow 40KiB:3MB --slow 1Mbit:10MB
    .venv/bin/python scripts/bench_upload.py --rclone --archive ARCHIVE --repeat 5
    .venv/bin/python scripts/bench_upload.py --encrypt --archive ARCHIVE.tar.zst --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import logging
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from watcher.config.settings import DriveConfig

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"  # fakedrive is a package of its own here
sys.path.insert(0, str(ROOT))
MIB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    """Incompressible bytes (like the photos and the compressed archive itself)."""
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(16 * MIB, left))
            f.write(block)
            left -= len(block)


def start_server(read_rate: float | None = None) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    rate = ["--read-rate", str(read_rate)] if read_rate else []
    proc = subprocess.Popen([sys.executable, "-m", "fakedrive", "--hash-only", *rate],
                            cwd=SCRIPTS, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info


def plain_put(api_root: str, path: Path, timeout: float = 120) -> tuple[float, float]:
    """(seconds, client CPU seconds) of one plain HTTP PUT of the file (the baseline)."""
    url = urlsplit(api_root)
    size = path.stat().st_size
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout, blocksize=MIB)
    with open(path, "rb") as f:
        cpu, start = time.process_time(), time.perf_counter()
        conn.request("PUT", "/bench/put", body=f, headers={"Content-Length": str(size)})
        resp = conn.getresponse()
        body = json.loads(resp.read())
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    conn.close()
    assert body["size"] == size, body
    return elapsed, cpu


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy so far, all cores (Linux ``/proc/stat``).

    Other people's work on a shared machine changes the figures; this measures it.
    """
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]                    # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def others_cores(busy: float, ours: float, seconds: float) -> float:
    """Cores' worth of CPU used by other processes during a run of ``seconds``."""
    return max(0.0, busy - ours) / seconds


def quiet_ratio(plain: list[float], others_plain: list[float], ours: list[float],
                others_ours: list[float], below: float) -> float | None:
    """Best plain / best ours over the runs other processes left (nearly) alone."""
    p = [s for s, o in zip(plain, others_plain, strict=True) if o < below]
    u = [s for s, o in zip(ours, others_ours, strict=True) if o < below]
    return min(p) / min(u) if p and u else None


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive_settings(info: dict[str, Any], token: Path, chunk_mib: int) -> DriveConfig:
    """A DriveConfig for the server ``info`` describes, its user sign-in written to ``token``
    as `drive login` stores it."""
    # the product imports once ROOT is on sys.path (see the top)
    from watcher.config.settings import DriveConfig  # noqa: PLC0415

    token.write_text(json.dumps({k: info[k] for k in ("refresh_token", "client_id",
                                                      "client_secret", "token_uri")}))
    return DriveConfig(enabled=True, folder_id=info["folder"], credentials_file="unused",
                       token_file=str(token), chunk_mib=chunk_mib, api_root=info["api_root"])


def child_upload(args: argparse.Namespace) -> None:
    """Runs in its own process: one put, timed, with its peak memory; with ``recipients``,
    the upload queue's encryption first (the encrypted file is removed afterwards)."""
    # the product imports once ROOT is on sys.path (see the top)
    from watcher.backup.sealing import discard, sealed_archive  # noqa: PLC0415
    from watcher.destinations.gdrive.destination import GoogleDriveDestination  # noqa: PLC0415

    info = json.loads(args.child)
    path = Path(info["file"])
    cfg = drive_settings(info, Path(info["token_file"]), info["chunk_mib"])
    dest = GoogleDriveDestination(cfg)
    sha = info["sha256"] or hashlib.sha256(path.read_bytes()).hexdigest()
    sid = info["snapshot_id"]
    recipients = info.get("recipients") or []
    rss_before = _status_kb("VmRSS")
    reset = _reset_peak()
    busy, cpu, start = machine_busy(), time.process_time(), time.perf_counter()
    sent, sealed, encrypt_seconds = path, None, 0.0
    if recipients:
        made = sealed_archive(path, sha, recipients)
        sent, sealed = made.path, made.sealed
        encrypt_seconds = time.perf_counter() - start
    remote = dest.put(sent, snapshot_id=sid, sha256=sha, sealed=sealed)
    assert remote.size == sent.stat().st_size
    if recipients:
        discard(path)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    busy = machine_busy() - busy
    print(json.dumps({"seconds": elapsed, "cpu_seconds": cpu, "machine_busy_seconds": busy,
                      "encrypt_seconds": encrypt_seconds, "rss_before_kb": rss_before,
                      "peak_kb": _status_kb("VmHWM") if reset else None}))


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def upload_in_child(info: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(info)],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def dropped_connection(size: int, chunk: int, tmp: Path) -> int:
    """Chunk bytes sent beyond the file size when the third chunk's connection drops."""
    # the product imports once ROOT is on sys.path (see the top), fakedrive from this folder
    from fakedrive import DriveServer, sign_in  # noqa: PLC0415

    from watcher.destinations.gdrive.destination import GoogleDriveDestination  # noqa: PLC0415
    from watcher.retry import RetryPolicy  # noqa: PLC0415

    path = tmp / "drop.bin"
    make_file(path, size)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with DriveServer() as server:
        info = {"api_root": server.url, "token_uri": server.token_uri,
                **sign_in(server.state)}
        # quick retries: this figure counts bytes, and waiting out a backoff adds none
        dest = GoogleDriveDestination(drive_settings(info, tmp / "drop-token.json",
                                                     chunk // MIB),
                                      timeout=30, retry=RetryPolicy(attempts=5, base=0.01,
                                                                    cap=0.05))
        server.state.inject("chunk", "drop", skip=2)
        dest.put(path, snapshot_id="siip-20260101T000000Z", sha256=sha)
        return server.state.chunk_bytes_sent() - size


#: units of --slow: rates in bytes a second, sizes in bytes
UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "kib": 1024, "mib": 1024**2,
         "kbit": 1000 / 8, "mbit": 1000**2 / 8}


def amount(text: str) -> float:
    """``40KiB``, ``1Mbit``, ``3MB``, ``125000``: a number and one of :data:`UNITS`."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)(?:/s)?\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number and one of "
                                         f"{', '.join(u for u in UNITS if u)}")
    return float(match.group(1)) * UNITS[match.group(2).lower()]


def slow_spec(text: str) -> tuple[str, float, int]:
    """``RATE:SIZE`` -> (the spec as given, bytes a second, bytes)."""
    rate, _, size = text.partition(":")
    if not size:
        raise argparse.ArgumentTypeError(f"{text!r}: expected RATE:SIZE, e.g. 40KiB:3MB")
    return text, amount(rate), int(amount(size))


class TimeoutCount(logging.Handler):
    """Counts the uploader's log lines about a request that timed out: the same words in
    every version of the uploader (the retry line quotes ``TimeoutError``), so the figure
    can be taken of an older checkout too."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "TimeoutError" in record.getMessage():
            self.count += 1


def small_send_buffers(size: int) -> None:
    """Every socket this process connects from now on queues at most about ``size`` bytes
    (``SO_SNDBUF``; the kernel doubles it), as on a slow uplink (see the module docstring)."""
    connect = socket.socket.connect

    def connecting(sock: socket.socket, address: Any) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        connect(sock, address)

    socket.socket.connect = connecting  # type: ignore[method-assign]


def slow_link(spec: tuple[str, float, int], tmp: Path, deadline: float) -> dict[str, Any]:
    """One file over a link of the given rate: a plain PUT, then our upload (see the module
    docstring)."""
    # the product imports once ROOT is on sys.path (see the top), fakedrive from this folder
    from fakedrive import DriveServer, DriveState, sign_in  # noqa: PLC0415

    from watcher.destinations.base import DestinationError  # noqa: PLC0415
    from watcher.destinations.gdrive.destination import GoogleDriveDestination  # noqa: PLC0415

    name, rate, size = spec
    data = tmp / "slow.bin"
    make_file(data, size)
    sha = hashlib.sha256(data.read_bytes()).hexdigest()
    pure = size / rate
    state = DriveState(keep_content=False)
    state.read_rate = rate
    counter = TimeoutCount()
    watcher_log = logging.getLogger("watcher")
    watcher_log.setLevel(logging.INFO)
    watcher_log.addHandler(counter)
    with DriveServer(state) as server:
        info = {"api_root": server.url, "token_uri": server.token_uri, **sign_in(state)}
        plain = plain_put(server.url, data, timeout=10 * pure + 60)[0]
        state.arrived_bytes = 0
        stop = threading.Event()
        timer = threading.Timer(deadline * pure, stop.set)
        timer.start()
        dest = GoogleDriveDestination(drive_settings(info, tmp / "slow-token.json", 16),
                                      stop=stop)
        start, error = time.perf_counter(), None
        try:
            dest.put(data, snapshot_id="siip-20260101T000000Z", sha256=sha)
        except DestinationError as exc:
            error = "stopped at the deadline" if stop.is_set() else str(exc)
        seconds = time.perf_counter() - start
        timer.cancel()
        arrived = state.arrived_bytes
        dest.close()
    watcher_log.removeHandler(counter)
    return {"link": name, "rate_bytes_s": rate, "size_bytes": size, "pure_seconds": pure,
            "plain_put_seconds": plain, "plain_put_ratio": plain / pure,
            "upload_seconds": seconds, "upload_ratio": seconds / pure,
            "finished": error is None, "error": error, "timeouts": counter.count,
            "resent_bytes": max(0, arrived - size) if error is None else arrived,
            "chunk_bytes": 16 * MIB}


def encrypted_uploads(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The same file up as it is and encrypted, interleaved (see the module docstring)."""
    # the product imports once ROOT is on sys.path (see the top)
    from pyrage import x25519  # noqa: PLC0415

    if args.archive:
        source = args.archive.resolve()
    else:
        source = tmp / "archive.bin"
        make_file(source, args.size_mib * MIB)
    h = hashlib.sha256()
    with open(source, "rb") as f:
        while block := f.read(16 * MIB):
            h.update(block)
    recipients = [str(x25519.Identity.generate().to_public())]
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "encrypted": []}
    proc, info = start_server(args.uplink)
    try:
        for i in range(args.repeat):
            # the encrypted file goes beside the archive: a link keeps it in this folder
            sid = f"siip-2026010{i + 1}T000000Z"
            link = tmp / f"{sid}.tar.zst"
            link.symlink_to(source)
            order = ("plain", "encrypted") if i % 2 == 0 else ("encrypted", "plain")
            for kind in order:
                runs[kind].append(upload_in_child({
                    **info, "file": str(link), "sha256": h.hexdigest(),
                    "token_file": str(tmp / "token.json"), "chunk_mib": args.chunk_mib,
                    "snapshot_id": sid if kind == "plain" else sid.replace("2026", "2027"),
                    "recipients": recipients if kind == "encrypted" else []}))
            link.unlink()
    finally:
        proc.terminate()
        proc.wait()

    def peak(r: dict[str, Any]) -> int:
        return ((r["peak_kb"] or 0) - (r["rss_before_kb"] or 0)) * 1024

    median = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    return {
        "command": " ".join([Path(sys.executable).name, "scripts/bench_upload.py",
                             *sys.argv[1:]]),
        "host": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpu, "
                f"Python {platform.python_version()}",
        "file": str(source), "size_bytes": source.stat().st_size, "runs": runs,
        "uplink_bytes_s": args.uplink,
        "plain_seconds": [r["seconds"] for r in runs["plain"]],
        "encrypted_seconds": [r["seconds"] for r in runs["encrypted"]],
        "encrypt_alone_seconds": [r["encrypt_seconds"] for r in runs["encrypted"]],
        "median_plain_seconds": median["plain"], "median_encrypted_seconds": median["encrypted"],
        "added_wall_time": median["encrypted"] / median["plain"] - 1,
        "peak_rss_above_start_plain_bytes": max(peak(r) for r in runs["plain"]),
        "peak_rss_above_start_encrypted_bytes": max(peak(r) for r in runs["encrypted"]),
        "load_average": os.getloadavg(),
    }


def print_encrypted(r: dict[str, Any]) -> None:
    """The encryption figures as a few lines."""
    added_mem = (r["peak_rss_above_start_encrypted_bytes"]
                 - r["peak_rss_above_start_plain_bytes"]) / MIB
    link = (f"an uplink of {r['uplink_bytes_s'] * 8 / 1e6:g} Mbit/s" if r["uplink_bytes_s"]
            else "loopback")
    print(f"{r['host']}; {r['size_bytes'] / 1e9:.2f} GB ({r['file']}) over {link}, "
          f"{len(r['plain_seconds'])} interleaved runs each; load average "
          f"{r['load_average'][0]:.2f}")
    print("  plain upload     " + ", ".join(f"{s:.2f}s" for s in r["plain_seconds"])
          + f"   median {r['median_plain_seconds']:.2f}s")
    print("  encrypted upload " + ", ".join(f"{s:.2f}s" for s in r["encrypted_seconds"])
          + f"   median {r['median_encrypted_seconds']:.2f}s (encrypting alone: "
          + ", ".join(f"{s:.2f}s" for s in r["encrypt_alone_seconds"]) + ")")
    print(f"  added wall time  {r['added_wall_time'] * 100:+.0f}%   target <= +10%")
    print(f"  peak RSS above start: plain "
          f"{r['peak_rss_above_start_plain_bytes'] / MIB:.1f} MiB, encrypted "
          f"{r['peak_rss_above_start_encrypted_bytes'] / MIB:.1f} MiB: added "
          f"{added_mem:+.1f} MiB   target <= 64 MiB")


def print_slow(results: list[dict[str, Any]]) -> None:
    """The slow-link figures as a table."""
    print(f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpu, Python "
          f"{platform.python_version()}; production settings (16 MiB chunks, 60 s timeout)")
    print(f"  {'link':12} {'size':>9} {'pure':>7} {'plain PUT':>16} {'Drive upload':>16} "
          f"{'timeouts':>8} {'re-sent':>10}")
    for r in results:
        ours = (f"{r['upload_seconds']:6.1f}s {r['upload_ratio']:5.2f}x" if r["finished"]
                else f"{r['upload_seconds']:6.1f}s FAILED")
        print(f"  {r['link']:12} {r['size_bytes'] / 1e6:7.2f}MB {r['pure_seconds']:6.1f}s "
              f"{r['plain_put_seconds']:8.1f}s {r['plain_put_ratio']:5.2f}x {ours:>16} "
              f"{r['timeouts']:8d} {r['resent_bytes'] / 1e6:8.2f}MB")
        if r["error"]:
            print(f"  {'':12} {r['error']}")


# the three figures in turn, as the module docstring lists them
def child_rclone(info: dict[str, Any]) -> None:
    """Runs in its own process: ``RcloneDestination.put`` of the file, timed, with this
    process's peak memory and that of the rclone processes it started."""
    # the product imports once ROOT is on sys.path (see the top)
    from watcher.config.settings import RcloneConfig  # noqa: PLC0415
    from watcher.destinations.rclone.destination import RcloneDestination  # noqa: PLC0415

    path = Path(info["file"])
    dest = RcloneDestination(RcloneConfig(enabled=True, remote=info["remote"],
                                          config_file=info["conf"]))
    reset = _reset_peak()
    start = time.perf_counter()
    remote = dest.put(path, snapshot_id=info["snapshot_id"], sha256=info["sha256"])
    elapsed = time.perf_counter() - start
    assert remote.size == path.stat().st_size
    print(json.dumps({"seconds": elapsed, "peak_kb": _status_kb("VmHWM") if reset else None,
                      "rclone_peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                      "hash": dest.hash_type()}))


def plain_copyto(binary: str, conf: Path, path: Path, target: str) -> tuple[float, int]:
    """``rclone copyto`` of ``path``: (wall seconds, peak RSS in kB)."""
    env = dict(os.environ, RCLONE_CONFIG=str(conf))
    start = time.perf_counter()
    proc = subprocess.Popen([binary, "copyto", str(path), target], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"rclone copyto failed with {proc.returncode}")
    return elapsed, usage.ru_maxrss


def rclone_uploads(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The plain ``rclone copyto`` against siip-watcher's put, interleaved (see the top)."""
    # the tests' servers: the same rclone serve webdav, credentials and rclone.conf
    from scripts.rclone_servers import running_servers  # noqa: PLC0415
    from watcher.archive.files import snapshot_id_of  # noqa: PLC0415
    from watcher.destinations.rclone.process import find_binary  # noqa: PLC0415

    path = args.archive
    if path is None:
        path = tmp / "bench-20260101T000000Z.tar.zst"
        make_file(path, args.size_mib * MIB)
    sid = snapshot_id_of(path.name) or "bench-20260101T000000Z"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(16 * MIB):
            h.update(block)
    binary = find_binary("")
    plain: list[float] = []
    ours: list[dict[str, Any]] = []
    plain_rss: list[int] = []
    with running_servers(tmp, ("webdav",)) as servers:
        server, conf = servers.by_kind["webdav"], servers.conf
        for i in range(args.repeat):
            for contender in (("plain", "ours") if i % 2 == 0 else ("ours", "plain")):
                if contender == "plain":
                    seconds, rss = plain_copyto(binary, conf, path,
                                                f"webdav:backups/plain-{i}/{path.name}")
                    plain.append(seconds)
                    plain_rss.append(rss)
                else:
                    info = {"file": str(path), "remote": f"webdav:backups/ours-{i}",
                            "conf": str(conf), "snapshot_id": sid, "sha256": h.hexdigest()}
                    out = subprocess.run([sys.executable, __file__, "--rclone-child",
                                          json.dumps(info)], check=True, capture_output=True,
                                         text=True)
                    ours.append(json.loads(out.stdout))
                shutil.rmtree(server.root / "backups", ignore_errors=True)
    size = path.stat().st_size
    ours_s = [r["seconds"] for r in ours]
    return {"file": str(path), "size_bytes": size, "repeat": args.repeat,
            "plain_copyto_seconds": plain, "siip_watcher_put_seconds": ours_s,
            "plain_mb_s_median": size / statistics.median(plain) / 1e6,
            "siip_watcher_mb_s_median": size / statistics.median(ours_s) / 1e6,
            "ratio_median": statistics.median(plain) / statistics.median(ours_s),
            "ratio_best": min(plain) / min(ours_s),
            "siip_watcher_peak_kb": max((r["peak_kb"] or 0) for r in ours),
            "siip_watcher_rclone_peak_kb": max(r["rclone_peak_kb"] for r in ours),
            "plain_rclone_peak_kb": max(plain_rss), "hash": ours[0]["hash"] if ours else ""}


def print_rclone(r: dict[str, Any]) -> None:
    print(f"{r['file']}: {r['size_bytes'] / MIB:.0f} MiB to rclone serve webdav on 127.0.0.1, "
          f"{r['repeat']} rounds interleaved (check: {r['hash'] or 'size'})")
    print(f"  plain rclone copyto : median {r['plain_mb_s_median']:.1f} MB/s "
          f"({', '.join(f'{s:.2f}' for s in r['plain_copyto_seconds'])} s), rclone peak "
          f"{r['plain_rclone_peak_kb'] / 1024:.0f} MiB")
    print(f"  siip-watcher put    : median {r['siip_watcher_mb_s_median']:.1f} MB/s "
          f"({', '.join(f'{s:.2f}' for s in r['siip_watcher_put_seconds'])} s), own peak "
          f"{r['siip_watcher_peak_kb'] / 1024:.0f} MiB, its rclone peak "
          f"{r['siip_watcher_rclone_peak_kb'] / 1024:.0f} MiB")
    print(f"  throughput ratio    : {r['ratio_median']:.3f} (medians), {r['ratio_best']:.3f} "
          f"(best runs)")


def measure_and_report(args: argparse.Namespace, prefix: str,
                       measure: Callable[[argparse.Namespace, Path], dict[str, Any]],
                       show: Callable[[dict[str, Any]], None]) -> None:
    """One measurement in a temporary folder, reported as JSON (``--json``) or text."""
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=prefix) as t:
        result = measure(args, Path(t))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)


def main() -> None:  # noqa: PLR0915
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=16)
    ap.add_argument("--drop-size-mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quiet-below", type=float, default=0.15,
                    help="also report the ratio over runs during which other processes used "
                         "fewer cores than this (the machine may be shared)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the test file")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--slow", action="append", type=slow_spec, metavar="RATE:SIZE",
                    help="measure SIZE over an uplink of RATE instead (e.g. 40KiB:3MB, "
                         "1Mbit:10MB; repeatable)")
    ap.add_argument("--deadline", type=float, default=5.0,
                    help="with --slow: stop an upload after this many times the pure "
                         "transfer time")
    ap.add_argument("--client-sndbuf", type=int, default=128 * 1024,
                    help="with --slow: the send buffer of the client's sockets (bytes)")
    ap.add_argument("--encrypt", action="store_true",
                    help="measure uploads with and without [encryption] instead (issue 11)")
    ap.add_argument("--archive", type=Path, default=None,
                    help="with --encrypt or --rclone: the file to upload (default: --size-mib "
                         "of random bytes)")
    ap.add_argument("--uplink", type=amount, default=None, metavar="RATE",
                    help="with --encrypt: the server reads no faster than RATE (e.g. 100Mbit), "
                         "as over a real uplink (default: as fast as loopback goes)")
    ap.add_argument("--rclone", action="store_true",
                    help="measure the rclone destination against a plain rclone copyto "
                         "instead (issue 12); --archive is the file to upload")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rclone-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_upload(args)
        return
    if args.rclone_child:
        child_rclone(json.loads(args.rclone_child))
        return
    if args.rclone:
        measure_and_report(args, "bench-rclone-", rclone_uploads, print_rclone)
        return
    if args.encrypt:
        measure_and_report(args, "bench-encrypt-", encrypted_uploads, print_encrypted)
        return
    if args.slow:
        small_send_buffers(args.client_sndbuf)
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-slow-") as t:
            results = [slow_link(spec, Path(t), args.deadline) for spec in args.slow]
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print_slow(results)
        return

    size, chunk = args.size_mib * MIB, args.chunk_mib * MIB
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-upload-") as t:
        tmp = Path(t)
        data = tmp / "archive.bin"
        make_file(data, size)
        h = hashlib.sha256()
        with open(data, "rb") as f:
            while block := f.read(16 * MIB):
                h.update(block)
        sha = h.hexdigest()
        proc, info = start_server()
        try:
            plain, ours, children = [], [], []
            plain_cpu, server_cpu_plain, server_cpu_ours = [], [], []
            others_plain, others_ours = [], []
            for i in range(args.repeat):
                before, busy = cpu_of(proc.pid), machine_busy()
                seconds, cpu = plain_put(info["api_root"], data)
                busy = machine_busy() - busy
                server_cpu_plain.append(cpu_of(proc.pid) - before)
                others_plain.append(others_cores(busy, cpu + server_cpu_plain[-1], seconds))
                plain.append(seconds)
                plain_cpu.append(cpu)
                before = cpu_of(proc.pid)
                res = upload_in_child({**info, "file": str(data), "sha256": sha,
                                       "token_file": str(tmp / "token.json"),
                                       "chunk_mib": args.chunk_mib,
                                       "snapshot_id": f"siip-2026010{i + 1}T000000Z"})
                server_cpu_ours.append(cpu_of(proc.pid) - before)
                others_ours.append(others_cores(res["machine_busy_seconds"],
                                                res["cpu_seconds"] + server_cpu_ours[-1],
                                                res["seconds"]))
                ours.append(res["seconds"])
                children.append(res)
        finally:
            proc.terminate()
            proc.wait()
        # at least four chunks, so that the third one exists to be cut
        resent = dropped_connection(max(args.drop_size_mib * MIB, 4 * chunk), chunk, tmp)

    best_plain, best_ours = min(plain), min(ours)
    peak = max((c["peak_kb"] or 0) - (c["rss_before_kb"] or 0) for c in children) * 1024
    result = {
        "command": " ".join([Path(sys.executable).name, "scripts/bench_upload.py",
                             *sys.argv[1:]]),
        "host": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cpu, "
                f"Python {platform.python_version()}",
        "size_bytes": size, "chunk_bytes": chunk,
        "plain_put_seconds": plain, "upload_seconds": ours,
        "plain_put_mb_s": size / best_plain / 1e6, "upload_mb_s": size / best_ours / 1e6,
        "ratio": best_plain / best_ours,
        "plain_put_client_cpu_seconds": min(plain_cpu),
        "upload_client_cpu_seconds": min(c["cpu_seconds"] for c in children),
        "server_cpu_seconds_plain": min(server_cpu_plain),
        "server_cpu_seconds_upload": min(server_cpu_ours),
        "load_average": os.getloadavg(),
        "others_cores_plain": others_plain, "others_cores_upload": others_ours,
        "quiet_ratio": quiet_ratio(plain, others_plain, ours, others_ours, args.quiet_below),
        "resent_after_drop_bytes": resent,
        "peak_rss_above_start_bytes": peak,
        "peak_rss_kb": max(c["peak_kb"] or 0 for c in children),
        "rss_before_upload_kb": max(c["rss_before_kb"] or 0 for c in children),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{result['host']}; {args.size_mib} MiB file, {args.chunk_mib} MiB chunks, best of "
          f"{args.repeat}")
    print(f"  plain HTTP PUT      {result['plain_put_mb_s']:8.0f} MB/s   runs: "
          + ", ".join(f"{s:.2f}s" for s in plain))
    print(f"  Drive upload (ours) {result['upload_mb_s']:8.0f} MB/s   runs: "
          + ", ".join(f"{s:.2f}s" for s in ours))
    print(f"  other processes' load (cores of {os.cpu_count()}) during each run: plain "
          + ", ".join(f"{c:.2f}" for c in others_plain) + "; ours "
          + ", ".join(f"{c:.2f}" for c in others_ours))
    print(f"  ratio               {result['ratio']:8.2f}x         target >= 0.8x")
    q = result["quiet_ratio"]
    print(f"  ratio on quiet runs {q:8.2f}x         (others below {args.quiet_below} cores)"
          if q else f"  ratio on quiet runs      n/a         (no run pair with others below "
          f"{args.quiet_below} cores)")
    print(f"  CPU s (client/server) plain {result['plain_put_client_cpu_seconds']:.2f}/"
          f"{result['server_cpu_seconds_plain']:.2f}, ours "
          f"{result['upload_client_cpu_seconds']:.2f}/{result['server_cpu_seconds_upload']:.2f}"
          f"; load average {result['load_average'][0]:.2f}")
    print(f"  re-sent after a drop {resent / MIB:7.2f} MiB        target <= {args.chunk_mib} MiB "
          f"(one chunk)")
    print(f"  peak RSS above start {peak / MIB:7.1f} MiB        target <= {args.chunk_mib + 50} "
          f"MiB (chunk + 50 MB); peak {result['peak_rss_kb'] / 1024:.0f} MiB, before "
          f"{result['rss_before_upload_kb'] / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
