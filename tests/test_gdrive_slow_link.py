"""Uploads over links slower than a chunk per timeout (issue 10), against fakedrive reading
each connection's bodies at a set rate (``DriveState.read_rate``), with the real
google-api-python-client transport.

Scaled down so that the suite stays quick: fractions of a second of base timeout and rates
of a few MiB/s stand for the production minute and the office's 0.3-1 Mbit/s. Nothing here
asserts on a duration; what is counted is whether the upload finished, how many chunk
requests ran out of time, and how many bytes went out twice.
"""

from __future__ import annotations

from pathlib import Path

from scripts.fakedrive import DriveServer
from tests.fakes.drive import CHUNK, drive_config, make_archive, make_drive
from watcher.destinations.gdrive.upload import Pace

SID = "siip-20261127T181500Z"
MIB = 1024 * 1024


def chunk_lengths(server: DriveServer) -> list[int]:
    """The length each chunk request declared, in the order they were sent (timed-out ones
    included; the server logs a request when it is done with it)."""
    lengths = []
    for r in sorted(server.state.ops("chunk"), key=lambda r: r.at):
        start, end = r.content_range.split(" ")[1].split("/")[0].split("-")
        lengths.append(int(end) - int(start) + 1)
    return lengths


def test_a_chunk_slower_than_the_timeout_no_longer_fails_the_upload(tmp_path: Path) -> None:
    """Before: a 3 MiB chunk at 2 MiB/s against a 0.5 s timeout timed out on every try.
    The first chunk is small and timed as if the link were slow; the next ones are sized
    and timed from the rate the first one showed."""
    with DriveServer() as server:
        server.state.read_rate = 2 * MIB
        dest = make_drive(drive_config(server, tmp_path), chunk=4 * MIB, timeout=0.5)
        path, sha = make_archive(tmp_path, SID, 3 * MIB)
        dest.put(path, snapshot_id=SID, sha256=sha)
        [stored] = server.state.live_files()
        assert stored.content == path.read_bytes()
        assert dest.pace.timeouts == 0
        assert server.state.arrived_bytes == 3 * MIB          # nothing went out twice
        assert chunk_lengths(server)[0] == 1 * MIB


def test_a_link_that_slows_down_gets_smaller_chunks_and_resends_one_per_timeout(
        tmp_path: Path) -> None:
    with DriveServer() as server:
        dest = make_drive(drive_config(server, tmp_path), chunk=2 * MIB, timeout=0.5)
        dest.pace = Pace(base=0.5, chunk_seconds=0.25)
        path, sha = make_archive(tmp_path, SID, 4 * MIB)

        def slow_down(_: int) -> None:
            server.state.read_rate = 1 * MIB          # after the first chunk, at full speed

        dest.put(path, snapshot_id=SID, sha256=sha, progress=slow_down)
        [stored] = server.state.live_files()
        assert stored.content == path.read_bytes()
        timeouts = dest.pace.timeouts
        assert timeouts >= 1
        # only the chunk in flight went out again, once per timeout
        assert server.state.chunk_bytes_sent() - 4 * MIB <= timeouts * 2 * MIB
        assert server.state.arrived_bytes - 4 * MIB <= timeouts * 2 * MIB
        lengths = chunk_lengths(server)
        assert lengths[1] == 2 * MIB                  # sized for the fast link: timed out
        assert max(lengths[1 + timeouts:]) < 2 * MIB  # then smaller


def test_even_the_smallest_chunk_gets_through_when_the_timeout_grows(tmp_path: Path) -> None:
    """A link slower than one 256 KiB chunk per timeout: the chunk cannot shrink further,
    so each timeout lengthens the next one until a chunk fits (any speed works)."""
    with DriveServer() as server:
        server.state.read_rate = 512 * 1024
        dest = make_drive(drive_config(server, tmp_path), chunk=CHUNK, timeout=0.2)
        # as if the link had been measured fast: its first chunk is timed far too short
        dest.pace = Pace(base=0.2, assumed_rate=4 * MIB)
        path, sha = make_archive(tmp_path, SID, 4 * CHUNK)
        dest.put(path, snapshot_id=SID, sha256=sha)
        [stored] = server.state.live_files()
        assert stored.content == path.read_bytes()
        assert dest.pace.timeouts >= 1
        assert set(chunk_lengths(server)) == {CHUNK}
        assert server.state.chunk_bytes_sent() - 4 * CHUNK <= dest.pace.timeouts * CHUNK
