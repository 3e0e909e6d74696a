"""Take one snapshot: consistent database copies plus the tree, into one ``.tar.zst``.

Layout (README.md, "The archive"): ``files/<path under root>``, ``databases/<file name>``,
``manifest.json`` last. Written as ``<archive>.partial``, fsynced, then renamed after its
``.sha256`` sidecar, so a file named ``*.tar.zst`` in the local dir is always complete. The
database copies run in a thread alongside the tree (SQLite releases the GIL), so their time is
mostly hidden; each database member is streamed as soon as its copy is checked and the walk
is done, between two tree members. Not during the walk: streaming a database takes the walking
thread for a while (0.4 s for 116 MB here), and the tree packer gets its files only from the
walk, so it would sit idle meanwhile.

The databases are the configured ones and, with ``source.discover_databases``, those the walk
finds under the root (watcher/snapshot/tree.py), each copied as soon as the walk reaches it
(one walk, no stat pass before it: the walk also counts and fingerprints the tree, and the
free space is checked again once it knows the snapshot's size).

Member order inside the archive is free (the manifest lists everything), so it is chosen for
speed: links and compressible files in walk order first, then the incompressible files
(photos) in frames of stored zstd blocks, then the small compressible files that the tree
packer's process packed meanwhile (watcher/snapshot/packer.py: all but the first
:data:`PACK_AFTER`), then the folders (last, so that ``tar -x`` sets their mode and mtime once
their contents exist), then the manifest. What the first pass holds
back is spooled to a file, not held in memory. A database member goes into the frames its
sampled compressibility calls for (watcher/snapshot/compressibility.py).
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from watcher import __version__
from watcher.archive.files import DELTA, FULL, PARTIAL_SUFFIX, private_opener
from watcher.archive.manifest import (
    BASE_KEY,
    DATABASES_PREFIX,
    FILES_PREFIX,
    FORMAT_VERSION,
    KIND_KEY,
    MANIFEST_MEMBER,
    PAGES_SUFFIX,
    REBUILD_MEMBER,
    ManifestSpool,
    member_entry,
)
from watcher.backup.report import DatabaseResult, Problem, SnapshotInfo
from watcher.config.settings import Config
from watcher.snapshot import nulrecords
from watcher.snapshot.base_state import (
    BaseDatabase,
    BaseState,
    PageDigests,
    StateWriter,
    diff_pages,
    latest_full,
)
from watcher.snapshot.compressibility import frames_for_samples, looks_incompressible
from watcher.snapshot.member import MemberChanged, open_member, walked_stat
from watcher.snapshot.packer import (
    CHANGED,
    FAILED,
    MEMBER,
    TOO_BIG,
    UNREADABLE,
    Packer,
    PackerFailed,
    rebuild_error,
    records,
)
from watcher.snapshot.plan import Plan, delta_too_big, plan_snapshot
from watcher.snapshot.readahead import SMALL_FILE, Outcome, ReadAhead, read_member
from watcher.snapshot.sqlite_copy import (
    CopyInterrupted,
    DatabaseCopy,
    DatabaseCopyError,
    copy_database,
)
from watcher.snapshot.tarstream import Aborted, CompressedSink, SinkError, TarProducer
from watcher.snapshot.tree import (
    Entry,
    Fingerprint,
    TreeFilter,
    TreeSummary,
    database_files,
    tree_fingerprint,
    walk,
)
from watcher.state.store import LocalStore

__all__ = ["SnapshotError", "SnapshotResult", "take_snapshot", "tree_fingerprint", "Aborted"]

log = logging.getLogger(__name__)

#: room left free beyond the estimate, for the filesystem and the catalog: a share of the
#: estimate (a fixed 64 MB refused an 8 KB project on a disk with 25 MB free), at least 1 MiB
FREE_SPACE_SHARE = 0.1
FREE_SPACE_MIN_MARGIN = 1 << 20


class SnapshotError(Exception):
    """The snapshot could not be taken; one line saying what failed and what to do.

    ``cause`` is one of :data:`watcher.backup.report.CAUSES` (or empty when none fits).
    """

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause


@dataclass
class SnapshotResult:
    """A stored snapshot, its warnings, and the tree fingerprint it was taken from.

    ``manifest_file`` is a copy of the archive's manifest left in the local dir (a ``.partial``
    name, so a crash leaves nothing behind that counts) for the run to compare with the next
    snapshot's; the caller moves or removes it.
    """

    info: SnapshotInfo
    warnings: list[Problem] = field(default_factory=list)
    fingerprint: str = ""
    manifest_file: Path | None = None


class DeltaTooBig(Exception):
    """The delta outgrew ``snapshot.max_delta_ratio`` of its base: take a full instead."""


def take_snapshot(  # noqa: PLR0913
    cfg: Config,
    store: LocalStore,
    *,
    now: datetime,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    force_full: bool = False,
) -> SnapshotResult:
    """Write a complete snapshot of ``cfg`` into ``store`` and return what was stored.

    It is a full archive, or a delta against the latest full as watcher/snapshot/plan.py
    decides (``force_full``: `once --full`). ``now`` is the run's start; the snapshot is
    named after the moment its databases were copied, which is later when a locked database
    kept the run waiting. Raises :class:`SnapshotError` (nothing stored), or
    :class:`Aborted` when ``stop`` is set. Either way no partial file is left behind.
    """
    plan = plan_snapshot(full_every_days=cfg.snapshot.full_every_days, forced=force_full,
                         latest_full=latest_full(store), now=now)
    log.info("snapshot: %s (%s)", plan.kind, plan.reason)
    if plan.kind == DELTA:
        try:
            return _take(cfg, store, plan, now=now, progress=progress, on_total=on_total,
                         stop=stop)
        except DeltaTooBig as exc:
            log.info("snapshot: a full instead (%s)", exc)
            plan = Plan(FULL, None, str(exc))
    return _take(cfg, store, plan, now=now, progress=progress, on_total=on_total, stop=stop)


# the snapshot's steps in order, each already a call
def _take(  # noqa: PLR0912,PLR0913,PLR0915
    cfg: Config,
    store: LocalStore,
    plan: Plan,
    *,
    now: datetime,
    progress: Callable[[int], None] | None,
    on_total: Callable[[int], None] | None,
    stop: threading.Event | None,
) -> SnapshotResult:
    root = cfg.source.root
    if not root.is_dir():
        raise SnapshotError(f"source.root {root} is not a folder; fix source.root in the "
                            f"configuration", "source_missing")
    missing = [p for p in cfg.source.database_paths() if not p.is_file()]
    if missing:
        raise SnapshotError(f"database {missing[0]} not found; fix source.databases in the "
                            f"configuration (paths are relative to source.root)",
                            "database_missing")

    # the copies of the databases come first and need their room at least; the whole
    # snapshot's size is known once the walk is done (see after_walk)
    _check_free_space(store.dir, sum(st.st_size for _, st in database_files(cfg)))

    # names the work files only: the snapshot's own id waits for its data's moment
    stem = store.new_snapshot_id(now)
    partial = store.partial_path(store.archive_path(stem, plan.kind))
    spool_path = store.dir / f".{stem}.manifest.partial"
    later_path = store.dir / f".{stem}.later.partial"
    warnings: list[Problem] = []
    packing = _Packing(store.dir / f".{stem}.pack-jobs.partial",
                       store.dir / f".{stem}.pack.partial",
                       store.dir / f".{stem}.pack-records.partial",
                       level=cfg.compression.level, threads=cfg.compression.threads,
                       hidden=(cfg.email.password_env, cfg.web.token_env))

    base = BaseState(store, plan.base.id) if plan.base else None
    # a full keeps what the next deltas compare against, unless deltas are off
    state = StateWriter(store, stem) if base is None and cfg.snapshot.full_every_days else None
    limit = _delta_limit(cfg, plan)
    # the database copies start at once: every commit made before the run began is in them
    databases = _Databases(cfg, store, stem, stop, base=base, state=state)
    sink: CompressedSink | None = None
    spool: ManifestSpool | None = None
    counted = Fingerprint()
    summary: TreeSummary | None = None
    try:
        tree_filter = TreeFilter.for_config(cfg)
        sink = CompressedSink(partial, level=cfg.compression.level,
                              threads=cfg.compression.threads, stop=stop)
        producer = TarProducer(sink, progress=progress, stop=stop)
        header: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "tool": "siip-watcher",
            "version": __version__,
            "name": cfg.name,
            "host": platform.node(),
            "source_root": str(root),
        }
        if plan.base is not None:
            header.update({KIND_KEY: DELTA, BASE_KEY: plan.base.id,
                           "base_sha256": plan.base.sha256})
        spool = ManifestSpool(spool_path, header)
        databases.attach(producer, spool, warnings)
        if plan.base is not None:
            _add_rebuild_script(producer, spool)

        def between() -> None:
            if summary is not None:  # the walk is done: the databases waited for it
                databases.poll()
            if limit is not None and delta_too_big(sink.size if sink else 0, *limit):
                raise DeltaTooBig(f"the delta outgrew {cfg.snapshot.max_delta_ratio:g} of "
                                  f"{plan.base.id if plan.base else ''}'s size")

        def after_walk() -> None:
            nonlocal summary
            summary = counted.finish(cfg)
            if on_total:
                on_total(summary.bytes)
            # what is not in the archive yet still needs room
            _check_free_space(store.dir, max(0, summary.bytes - (sink.size if sink else 0)))

        files, bytes_in = _add_tree(counted.through(walk(cfg.source.root, tree_filter)),
                                    producer, spool, warnings,
                                    later_path, packing, between=between,
                                    after_walk=after_walk, on_database=databases.found,
                                    base_members=base.members() if base else None)
        db_results = databases.wait()
        # not the run's start: a database locked for minutes holds what was committed then
        created = max([now, *(c.copied_at for c in databases.copies)])
        snapshot_id = store.new_snapshot_id(created)
        archive = store.archive_path(snapshot_id, plan.kind)
        # a found database that could not be copied went in as plain files
        files += databases.plain_files
        bytes_in += databases.plain_bytes + sum(d.size for d in db_results)
        producer.set_incompressible(False)
        # id and time go after the members: they are known only once the databases are read
        manifest_size = spool.finish({
            "id": snapshot_id,
            "created_at": created.isoformat(),
            "databases": [d.record() for d in db_results],
            "totals": {"files": files, "bytes": bytes_in},
            "warnings": [w.message for w in warnings],
        })
        with open(spool_path, "rb") as fh:
            producer.add_stream(MANIFEST_MEMBER, fh, manifest_size, 0o600, created.timestamp(),
                                os.getuid() if hasattr(os, "getuid") else 0,
                                os.getgid() if hasattr(os, "getgid") else 0)
        producer.end()
        size, sha256 = sink.close()
        sink = None
        if limit is not None and delta_too_big(size, *limit):
            raise DeltaTooBig(f"the delta is {size:,} bytes, over "
                              f"{cfg.snapshot.max_delta_ratio:g} of its base's")
        store.commit(partial, archive, sha256)
        kept_manifest = store.dir / f".{snapshot_id}.manifest.json{PARTIAL_SUFFIX}"
        os.replace(spool_path, kept_manifest)
        if state is not None:
            _keep_state(state, snapshot_id, kept_manifest)
            state = None
    except DatabaseCopyError as exc:
        raise SnapshotError(str(exc), exc.cause) from None
    except CopyInterrupted:
        raise Aborted("the run was asked to stop") from None
    except SinkError as exc:
        raise SnapshotError(str(exc), exc.cause) from None
    except PackerFailed as exc:
        raise SnapshotError(f"{exc}; {exc.hint}", "write_failed") from None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            # whichever write met it first (the archive, the manifest, a work file)
            raise SnapshotError(f"the disk of the backup dir {store.dir} is full ({exc}); "
                                f"free space there or lower the retention.keep_* settings, "
                                f"then run again", "disk_full") from None
        raise SnapshotError(f"the snapshot failed: {exc}; check the backup dir {store.dir} "
                            f"and the source", "write_failed") from None
    finally:
        if sink is not None:
            sink.abort()
        if spool is not None:
            spool.discard()
        if state is not None:
            state.discard()
        databases.close()
        packing.close()
        partial.unlink(missing_ok=True)
        later_path.unlink(missing_ok=True)

    info = SnapshotInfo(id=snapshot_id, file=str(archive), created_at=created, size=size,
                        sha256=sha256, files=files, bytes_in=bytes_in, databases=db_results,
                        kind=plan.kind, base=plan.base.id if plan.base else None)
    assert summary is not None  # after_walk ran
    return SnapshotResult(info=info, warnings=warnings, fingerprint=summary.fingerprint,
                          manifest_file=kept_manifest)


def _keep_state(state: StateWriter, snapshot_id: str, manifest: Path) -> None:
    """Publish a full's delta state; the full is stored already, so a failure here only
    costs the next snapshot being a full as well."""
    try:
        state.commit(snapshot_id, manifest)
    except OSError as exc:
        state.discard()
        log.warning("could not keep the page digests of %s (%s); the next snapshot is a full "
                    "too", snapshot_id, exc)


def _delta_limit(cfg: Config, plan: Plan) -> tuple[int, float] | None:
    """(base size, max ratio) for :func:`delta_too_big`, or None for a full."""
    if plan.base is None:
        return None
    return plan.base.size, cfg.snapshot.max_delta_ratio


def _add_rebuild_script(producer: TarProducer, spool: ManifestSpool) -> None:
    """Every delta carries the stdlib-only script that rebuilds it (README.md, "Rebuilding a
    delta without siip-watcher"), at the archive's root beside the manifest."""
    source = (Path(__file__).resolve().parent.parent / "archive" / "rebuild.py").read_bytes()
    now = time.time()
    producer.add_bytes(REBUILD_MEMBER, source, 0o644, now)
    spool.add(member_entry(REBUILD_MEMBER, "file", len(source), 0o644, int(now * 1e9),
                           sha256=hashlib.sha256(source).hexdigest()))


def _check_free_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    # incompressible photos dominate such trees: plan for the archive being as big as the input
    want = needed + max(FREE_SPACE_MIN_MARGIN, int(needed * FREE_SPACE_SHARE))
    if free < want:
        raise SnapshotError(
            f"not enough free space in {folder}: the snapshot may need {_mb(want)} and "
            f"{_mb(free)} is free; free space there or lower the retention.keep_* settings",
            "disk_full")


def _mb(n: int) -> str:
    return f"{n / 1e6:,.0f} MB"


def _db_member_names(paths: list[Path]) -> list[str]:
    """``databases/<file name>``, disambiguated when two databases share a file name."""
    names: list[str] = []
    for i, p in enumerate(paths):
        name = DATABASES_PREFIX + p.name
        if name in names:
            name = f"{DATABASES_PREFIX}{i}-{p.name}"
        names.append(name)
    return names


#: what a copy of a database nobody listed may fail on and still leave the run going: the
#: database itself is gone, damaged, locked or unreadable
_OWN_FAULTS = ("database_missing", "database_damaged", "database_unreadable")


@dataclass
class _DatabaseJob:
    """One database copy: a configured database, or one the walk found (``found``)."""

    source: Path
    path: str                      # DatabaseResult.path: as configured, or under the root
    member: str
    target: Path                   # the copy, in the backup dir
    future: concurrent.futures.Future[DatabaseCopy]
    found: Entry | None = None


class _Databases:
    """The database copies of one snapshot, made one at a time on their own thread and
    added to the archive in the order they were started, each as soon as it is checked and
    the walk is done (see the module doc)."""

    def __init__(self, cfg: Config, store: LocalStore, stem: str,
                 stop: threading.Event | None, *, base: BaseState | None,
                 state: StateWriter | None) -> None:
        self.cfg, self.store, self.stem, self.stop = cfg, store, stem, stop
        #: a delta's base (its pages are compared) or a full's state (its pages digested)
        self.base, self.state = base, state
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-copy")
        self.jobs: list[_DatabaseJob] = []
        self.done = 0                  # jobs[:done] are in the archive (or left out)
        self.results: list[DatabaseResult] = []
        self.copies: list[DatabaseCopy] = []
        #: members and bytes of found databases archived as plain files instead
        self.plain_files = self.plain_bytes = 0
        self._out: tuple[TarProducer, ManifestSpool, list[Problem]] | None = None
        #: a copy failed the run (or it ended): the copies after it are not worth making
        self._failed = threading.Event()
        paths = cfg.source.database_paths()
        for configured, source, member in zip(cfg.source.databases, paths,
                                              _db_member_names(paths), strict=True):
            self._start(source, configured, member, None)

    def _start(self, source: Path, path: str, member: str, found: Entry | None) -> None:
        target = self.store.dir / f".{self.stem}.db{len(self.jobs)}.partial"
        future = self.pool.submit(self._copy, source, target, fatal=found is None)
        self.jobs.append(_DatabaseJob(source, path, member, target, future, found))

    def _copy(self, source: Path, target: Path, *, fatal: bool) -> DatabaseCopy:
        """On the copy thread: one copy, unless an earlier one already failed the run."""
        if self._failed.is_set():
            raise CopyInterrupted(str(source))  # never added: the run has failed already
        try:
            return copy_database(source, target, stop=self.stop,
                                 lock_timeout=self.cfg.source.lock_timeout_seconds)
        except DatabaseCopyError as exc:
            if fatal or exc.cause not in _OWN_FAULTS:
                self._failed.set()
            raise
        except BaseException:
            self._failed.set()
            raise

    def found(self, entry: Entry) -> None:
        """Copy a database the walk found under the root, as the configured ones are."""
        log.info("found the SQLite database %s under source.root (not in source.databases); "
                 "copying it like the listed ones", entry.path)
        name = os.path.basename(entry.path)
        taken = {job.member for job in self.jobs}
        member, n = DATABASES_PREFIX + name, len(self.jobs)
        while member in taken:
            member = f"{DATABASES_PREFIX}{n}-{name}"
            n += 1
        self._start(Path(entry.path), entry.rel, member, entry)

    def found_paths(self) -> list[Path]:
        """The found databases being copied, for the tree walk to leave out."""
        return [job.source for job in self.jobs if job.found is not None]

    def attach(self, producer: TarProducer, spool: ManifestSpool,
               warnings: list[Problem]) -> None:
        """Where the copies go once checked, and where their warnings go."""
        self._out = (producer, spool, warnings)

    def poll(self) -> None:
        """Between two tree members: add the copies that are checked, in order."""
        while self.done < len(self.jobs) and self.jobs[self.done].future.done():
            self._add(self.jobs[self.done])
            self.done += 1

    def wait(self) -> list[DatabaseResult]:
        """After the tree: wait for every copy (still answering a stop request), add them."""
        assert self._out is not None
        while self.done < len(self.jobs):
            self._out[0].check_stop()
            try:
                self.jobs[self.done].future.exception(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue
            self.poll()
        return self.results

    def close(self) -> None:
        """Cancel the copies not started, wait for the running one, delete every copy."""
        self._failed.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        for job in self.jobs:
            job.target.unlink(missing_ok=True)

    def _add(self, job: _DatabaseJob) -> None:
        assert self._out is not None
        producer, spool, _ = self._out
        try:
            copy = job.future.result()  # raises what the copy raised
        except DatabaseCopyError as exc:
            if job.found is None or exc.cause not in _OWN_FAULTS:
                raise  # a listed database, or the backup dir's fault (a full disk)
            self._add_plain(job.found, exc)
            return
        self.copies.append(copy)
        was = producer.frames
        src_st = os.stat(copy.source)
        based = self.base.databases.get(job.path) if self.base else None
        if based is not None and based.page_size == copy.page_size:
            self.results.append(self._add_pages(job, copy, src_st, based))
            producer.set_frames(was)
            return
        with open(copy.copy, "rb", buffering=0) as fh:
            size = os.fstat(fh.fileno()).st_size
            producer.set_frames(frames_for_samples(fh.fileno(), size))
            if self.state is None:
                sha, _ = producer.add_stream(job.member, fh, size, src_st.st_mode,
                                             src_st.st_mtime, src_st.st_uid, src_st.st_gid)
            else:
                with self.state.digests_file(job.path, job.member, copy.page_size,
                                             copy.pages) as out:
                    sha, _ = producer.add_stream(job.member, PageDigests(fh, out,
                                                                         copy.page_size),
                                                 size, src_st.st_mode, src_st.st_mtime,
                                                 src_st.st_uid, src_st.st_gid)
        spool.add(member_entry(job.member, "file", size, src_st.st_mode, src_st.st_mtime_ns,
                               sha256=sha))
        self.results.append(DatabaseResult(
            path=job.path, member=job.member, pages=copy.pages, page_size=copy.page_size,
            size=size, check=copy.check, check_pragma=copy.check_pragma,
            discovered=job.found is not None))
        producer.set_frames(was)

    def _add_pages(self, job: _DatabaseJob, copy: DatabaseCopy, src_st: os.stat_result,
                   based: BaseDatabase) -> DatabaseResult:
        """A delta's database: only the pages that differ from the base full's copy."""
        assert self._out is not None
        producer, spool, _ = self._out
        pages_path = job.target.with_name(job.target.name + ".pages")
        member = job.member + PAGES_SUFFIX
        try:
            with open(pages_path, "w+b", opener=private_opener) as out:
                diff = diff_pages(copy.copy, based, out)
                size = out.tell()
                out.seek(0)
                producer.set_frames(frames_for_samples(out.fileno(), size))
                sha, _ = producer.add_stream(member, out, size, 0o600, src_st.st_mtime,
                                             src_st.st_uid, src_st.st_gid)
        finally:
            pages_path.unlink(missing_ok=True)
        spool.add(member_entry(member, "file", size, 0o600, src_st.st_mtime_ns, sha256=sha))
        return DatabaseResult(
            path=job.path, member=job.member, pages=diff.pages, page_size=copy.page_size,
            size=diff.pages * copy.page_size, check=copy.check, check_pragma=copy.check_pragma,
            discovered=job.found is not None, sha256=diff.sha256,
            mode=src_st.st_mode & 0o7777, mtime_ns=src_st.st_mtime_ns, pages_member=member,
            base_member=based.member, changed_pages=diff.changed)

    def _add_plain(self, found: Entry, exc: DatabaseCopyError) -> None:
        """A found database that could not be copied: as plain files, as before discovery.

        Failing the run instead would let one damaged or stuck file that nobody listed stop
        every backup of the project; its bytes as they lie on disk are the best copy there is.
        """
        assert self._out is not None
        producer, spool, warnings = self._out
        if exc.cause == "database_missing":
            warnings.append(Problem(f"{found.path} vanished while the snapshot was taken; it "
                                    f"is not in this snapshot",
                                    "nothing to do if the app deleted it",
                                    key="vanished", params={"path": found.path}))
            return
        warnings.append(Problem(
            f"{exc} (found under source.root, not listed in source.databases); this snapshot "
            f"holds it as the files on disk instead, which may not be consistent",
            "repair it, or exclude it in source.exclude if it holds nothing to keep",
            key="found_database_as_files", params={"path": found.path}, detail=str(exc)))
        was = producer.incompressible
        producer.set_incompressible(False)
        for entry in (found, *found.sides):
            added = _add_file(entry.path, FILES_PREFIX + entry.rel, entry.st, producer, spool,
                              warnings)
            if added is not None:
                self.plain_files += 1
                self.plain_bytes += added
        producer.set_incompressible(was)


#: small compressible files a snapshot reads in its own process before it starts a packer
#: process for the rest (watcher/snapshot/packer.py): a small tree is done before a process
#: would have started
PACK_AFTER = 512


class _Packing:
    """The small compressible files past the first :data:`PACK_AFTER`, handed to a packer
    process; its part is appended to the archive, its records to the manifest."""

    def __init__(self, jobs: Path, part: Path, records: Path, *, level: int,
                 threads: int, hidden: tuple[str, ...]) -> None:
        self.jobs, self.part, self.records = jobs, part, records
        self.hidden = hidden  # the environment variables holding secrets
        self.failed_to_start = False
        # zstd's threads there: one, so reading overlaps compressing, unless told 1 in all
        self.level, self.workers = level, 0 if threads == 1 else 1
        self.seen = 0
        self.packer: Packer | None = None

    def take(self, path: str, name: str, walked: os.stat_result) -> bool:
        """Whether the packer takes this file (it does past the first PACK_AFTER)."""
        self.seen += 1
        if self.seen <= PACK_AFTER:
            return False
        if self.packer is None:
            if self.failed_to_start:
                return False
            try:
                self.packer = Packer(self.jobs, self.part, self.records, level=self.level,
                                     workers=self.workers, hidden=self.hidden)
            except OSError as exc:
                # the files are packed here instead, as on a small tree: slower, as complete
                self.failed_to_start = True
                log.warning("could not start the tree packer (%s: %s); this snapshot reads "
                            "every file in the service's own process", sys.executable, exc)
                return False
        self.packer.add(path, name, walked)
        return True

    def finish(self, producer: TarProducer, spool: ManifestSpool, warnings: list[Problem],
               between: Callable[[], None]) -> tuple[int, int]:
        """Wait for the packer, append its part and records; returns (members, bytes of
        content) it added, members streamed here included (files that grew too big)."""
        if self.packer is None:
            return 0, 0

        def wait(proc: subprocess.Popen[bytes]) -> None:
            while True:
                try:
                    proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    producer.check_stop()
                    between()
                else:
                    return

        packed = self.packer.finish(wait)
        members, content = packed.members, packed.bytes
        if packed.tar_bytes:
            producer.append_frames(packed.part, packed.tar_bytes)
        for tag, value in records(packed.records):
            if tag == MEMBER:
                spool.add_encoded(value)
            elif tag == CHANGED:
                fields = json.loads(value)
                spool.add_encoded(fields["entry"])
                warnings.append(_file_warning(fields["path"], "changed while being read", 0))
            elif tag == UNREADABLE:
                fields = json.loads(value)
                warnings.append(_unreadable_problem(fields["path"], rebuild_error(fields)))
            elif tag == FAILED:
                raise rebuild_error(json.loads(value))  # as reading it here would have
            elif tag == TOO_BIG:
                fields = json.loads(value)
                walked = walked_stat(fields["mode"], fields["ino"], fields["dev"],
                                     fields["size"])
                added = _add_big_file(fields["path"], fields["name"], walked, producer, spool,
                                      warnings)
                if added is not None:
                    members += 1
                    content += added
        return members, content

    def close(self) -> None:
        """Stop the packer if it still runs; delete its files (after the archive is closed:
        the archive writer copies the part)."""
        if self.packer is not None:
            self.packer.abort()


# internal, called once with all it needs
def _add_tree(entries: Iterator[Entry], producer: TarProducer, spool: ManifestSpool,  # noqa: PLR0913,PLR0917
              warnings: list[Problem], later_path: Path, packing: _Packing,
              between: Callable[[], None], after_walk: Callable[[], None],
              on_database: Callable[[Entry], None],
              base_members: dict[str, dict[str, Any]] | None = None) -> tuple[int, int]:
    """Stream every kept entry of the tree; returns (members, bytes of file content).

    For a delta, ``base_members`` are the base full's file records: a file that matches its
    record is referenced in the manifest, never read (see :func:`_unchanged`); the counts
    still describe the whole tree.

    Three passes over one walk: the first adds links and compressible files and spools the
    rest to ``later_path``; the second adds the incompressible files, so the archive switches
    zstd frames once instead of at every photo; the third adds the folders. Past the first
    :data:`PACK_AFTER` small compressible files, the first pass hands them to ``packing``'s
    process instead, whose part is appended before the folders. Folders go last
    so that ``tar -x`` sets their mode and mtime after everything inside them exists (a folder
    restored earlier would get a new mtime from later files, or refuse them when read-only).
    ``between()`` runs between members (it adds the databases when they are ready);
    ``after_walk()`` once the walk is done; ``on_database(entry)`` gets each database the
    walk finds, which is not a tree member.
    """
    ahead = ReadAhead()
    with open(later_path, "w+b", opener=private_opener) as later:
        try:
            members, content = _add_first_pass(entries, producer, spool, warnings,
                                               later, between, on_database, base_members,
                                               ahead, packing)
            after_walk()
            later.seek(0)
            producer.set_incompressible(True)
            files = (rec for rec in _read_later(later) if rec.kind == "f")
            for rec, outcome in ahead.in_order(files, _later_file):
                producer.check_stop()
                between()
                added = _add_file(rec.path, FILES_PREFIX + rec.rel, _walked(rec), producer,
                                  spool, warnings, outcome)
                if added is not None:
                    members += 1
                    content += added
        finally:
            ahead.close()
        producer.set_incompressible(False)
        packed = packing.finish(producer, spool, warnings, between)
        members += packed[0]
        content += packed[1]
        later.seek(0)
        for rec in _read_later(later):
            if rec.kind != "d":
                continue
            producer.check_stop()
            between()
            name = FILES_PREFIX + rec.rel
            producer.add_dir(name, rec.mode, rec.mtime_ns / 1e9, rec.uid, rec.gid)
            spool.add(member_entry(name, "dir", 0, rec.mode, rec.mtime_ns))
            members += 1
    return members, content


@dataclass(frozen=True)
class _Later:
    """An entry held back for a later pass: "f" (incompressible file) or "d" (folder).

    A file keeps the walk's mode, device and inode, so that the later pass reads the very
    file the walk saw and nothing swapped in for it since, and its size, which bounds how
    far that pass reads ahead.
    """

    kind: str
    rel: str
    path: str
    mode: int = 0
    mtime_ns: int = 0
    uid: int = 0
    gid: int = 0
    dev: int = 0
    ino: int = 0
    size: int = 0


_LATER_FIELDS = 10


def _later_record(rec: _Later) -> bytes:
    """One record of watcher/snapshot/nulrecords.py (surrogateescape keeps names that are
    not valid UTF-8). A folder keeps the stat of the first pass, so its member says what the
    walk saw."""
    fields = (rec.kind, rec.rel, rec.path, str(rec.mode), str(rec.mtime_ns), str(rec.uid),
              str(rec.gid), str(rec.dev), str(rec.ino), str(rec.size))
    return nulrecords.encode(f.encode("utf-8", "surrogateescape") for f in fields)


def _read_later(fh: Any) -> Iterator[_Later]:
    """The records written by :func:`_later_record`, read in bounded blocks."""
    for fields in nulrecords.decode(iter(lambda: fh.read(1 << 16), b""), _LATER_FIELDS):
        kind, rel, path, *numbers = (f.decode("utf-8", "surrogateescape") for f in fields)
        mode, mtime_ns, uid, gid, dev, ino, size = (int(n) for n in numbers)
        yield _Later(kind, rel, path, mode, mtime_ns, uid, gid, dev, ino, size)


def _walked(rec: _Later) -> os.stat_result:
    """The walk's type, identity and size of a held-back file: all open_member looks at."""
    return walked_stat(rec.mode, rec.ino, rec.dev, rec.size)


def _later_file(rec: _Later) -> tuple[str, os.stat_result] | None:
    """A held-back file the reader reads ahead: every one that was small when walked."""
    return (rec.path, _walked(rec)) if rec.size <= SMALL_FILE else None


#: what the first pass does with a regular file (see its ``route``): the packer took it, a
#: delta takes it unchanged from its base, or it waits for the pass of incompressible files
PACKED, REFERENCED, LATER = "packed", "referenced", "later"


# internal, called once with all it needs
def _add_first_pass(entries: Iterator[Entry], producer: TarProducer,  # noqa: PLR0912,PLR0913,PLR0915,PLR0917
                    spool: ManifestSpool, warnings: list[Problem], later: Any,
                    between: Callable[[], None],
                    on_database: Callable[[Entry], None],
                    base_members: dict[str, dict[str, Any]] | None,
                    ahead: ReadAhead, packing: _Packing) -> tuple[int, int]:
    members = content = 0

    def route(entry: Entry) -> tuple[Entry, str | None, tuple[str, os.stat_result] | None]:
        """(entry, PACKED, REFERENCED, LATER or None, the file the read-ahead reads for it),
        decided once per file: the trial compression of a big file reads it."""
        if entry.kind != "file":
            return entry, None, None
        # a delta's unchanged files are referenced, never read
        if base_members is not None and _unchanged(base_members.get(FILES_PREFIX + entry.rel),
                                                   entry.st):
            return entry, REFERENCED, None
        if looks_incompressible(entry.path, entry.rel, entry.st):
            return entry, LATER, None
        if entry.st.st_size > SMALL_FILE:
            return entry, None, None  # streamed when its turn comes
        if packing.take(entry.path, FILES_PREFIX + entry.rel, entry.st):
            return entry, PACKED, None
        return entry, None, (entry.path, entry.st)

    routed = (route(entry) for entry in entries)
    for (entry, how, _), outcome in ahead.in_order(routed, lambda item: item[2]):
        producer.check_stop()
        between()
        st = entry.st
        if how == PACKED:
            if producer.progress:
                producer.progress(st.st_size)
            continue
        name = FILES_PREFIX + entry.rel
        if entry.kind == "database":
            on_database(entry)  # copied like a configured one, added when checked
            continue
        if entry.kind == "error":
            err = getattr(st, "error", None)
            if isinstance(err, MemberChanged):
                warnings.append(_changed_problem(err))
                continue
            reason = str(getattr(err, "strerror", None) or err)
            warnings.append(Problem(
                f"could not read {entry.path}: {reason}",
                "give the service user read access to it, or exclude it in source.exclude",
                key="read_failed", params={"path": entry.path}, detail=reason))
            continue
        if entry.kind == "other":
            warnings.append(Problem(f"skipped {entry.path}: not a regular file, folder or link",
                                    "exclude it in source.exclude to silence this warning",
                                    key="not_a_file", params={"path": entry.path}))
            continue
        if entry.kind == "dir":
            later.write(_later_record(_Later("d", entry.rel, entry.path, st.st_mode,
                                             st.st_mtime_ns, st.st_uid, st.st_gid)))
            continue
        if entry.kind == "symlink":
            try:
                target = os.readlink(entry.path)
            except OSError:
                continue  # vanished since the walk
            producer.add_symlink(name, target, st.st_mode, st.st_mtime, st.st_uid, st.st_gid)
            spool.add(member_entry(name, "symlink", 0, st.st_mode, st.st_mtime_ns,
                                   target=target))
            members += 1
            continue
        if how == REFERENCED:
            assert base_members is not None
            spool.add_referenced(base_members[name])
            members += 1
            content += st.st_size
            continue
        if how == LATER:
            later.write(_later_record(_Later("f", entry.rel, entry.path, st.st_mode,
                                             dev=st.st_dev, ino=st.st_ino, size=st.st_size)))
            continue
        added = _add_file(entry.path, name, st, producer, spool, warnings, outcome)
        if added is not None:
            members += 1
            content += added
    return members, content


def _add_file(path: str, name: str, walked: os.stat_result, producer: TarProducer,  # noqa: PLR0913,PLR0917
              spool: ManifestSpool, warnings: list[Problem],
              outcome: Outcome | None = None) -> int | None:
    """Add one regular file, the one the walk saw as ``walked``; returns its size, or None
    when it vanished or changed into something else (a link, a FIFO) before reading.

    ``outcome`` is what a :class:`ReadAhead` made of it; without one it is read here.
    """
    if outcome is None:
        outcome = read_member(path, walked)
    if outcome.failure is not None:
        raise outcome.failure  # reading an opened file failed: the run fails, as it says
    if outcome.error is not None:
        warnings.append(_unreadable_problem(path, outcome.error))
        return None
    if outcome.read is None:
        return _add_big_file(path, name, walked, producer, spool, warnings)
    read = outcome.read
    producer.add_bytes(name, read.data, read.before.st_mode, read.before.st_mtime,
                       read.before.st_uid, read.before.st_gid)
    warning = "changed while being read" if read.changed else None
    spool.add(member_entry(name, "file", len(read.data), read.before.st_mode,
                           read.before.st_mtime_ns, sha256=read.sha256, warning=warning))
    if warning:
        warnings.append(_file_warning(path, warning, 0))
    return len(read.data)


def _add_big_file(path: str, name: str, walked: os.stat_result, producer: TarProducer,  # noqa: PLR0917
                  spool: ManifestSpool, warnings: list[Problem]) -> int | None:
    """A file over SMALL_FILE, streamed: it may change while it is read, and says so."""
    try:
        fd, before = open_member(path, walked)
    except OSError as exc:
        warnings.append(_unreadable_problem(path, exc))
        return None
    with open(fd, "rb", buffering=0) as fh:
        warning = None
        zeros = 0
        size = before.st_size
        sha, got = producer.add_stream(name, fh, size, before.st_mode, before.st_mtime,
                                       before.st_uid, before.st_gid)
        after = os.fstat(fd)
        if got < size:
            zeros = size - got
            warning = (f"shrank while being read: the last {zeros} bytes of the "
                       f"member are zeros")
        elif _changed(before, after):
            warning = "changed while being read"
        spool.add(member_entry(name, "file", size, before.st_mode, before.st_mtime_ns,
                               sha256=sha, warning=warning))
        if warning:
            warnings.append(_file_warning(path, warning, zeros))
        return size


def _unchanged(base: dict[str, Any] | None, st: os.stat_result) -> bool:
    """Whether a regular file is as the base full recorded it: same size, mtime (ns) and
    mode, and the base read it whole (no warning). Only its stat is looked at."""
    return (base is not None and base.get("type") == "file" and "sha256" in base
            and not base.get("warning") and base.get("size") == st.st_size
            and base.get("mtime_ns") == st.st_mtime_ns
            and base.get("mode") == st.st_mode & 0o7777)


def _unreadable_problem(path: str, exc: BaseException) -> Problem:
    """The warning for a file that vanished, was swapped, or could not be opened."""
    if isinstance(exc, FileNotFoundError):
        return Problem(f"{path} vanished while the snapshot was taken; it is not in this "
                       f"snapshot", "nothing to do if the app deleted it",
                       key="vanished", params={"path": path})
    if isinstance(exc, MemberChanged):
        return _changed_problem(exc)
    if not isinstance(exc, OSError):
        raise exc
    reason = str(exc.strerror or exc)
    return Problem(f"could not read {path}: {reason}",
                   "give the service user read access to it, or exclude it in source.exclude",
                   key="read_failed", params={"path": path}, detail=reason)


def _file_warning(path: str, warning: str, zeros: int) -> Problem:
    """The warning for a file that changed or shrank while it was read."""
    return Problem(f"{path} {warning}; this snapshot may hold a mix of old and new content "
                   f"for it", "the next snapshot will hold it whole; nothing to do unless it "
                   "keeps happening", key="file_shrank" if zeros else "file_changed",
                   params={"path": path, "bytes": zeros})


def _changed_problem(exc: MemberChanged) -> Problem:
    """The warning for a member swapped for something else since the walk: it is left out,
    and nothing it may point to is read in its place."""
    return Problem(f"{exc}; it is not in this snapshot, and nothing it points to was read",
                   "nothing to do if the app replaced it (the next snapshot holds it as it is "
                   "then); if nobody should, find out who changes files under source.root",
                   key="file_replaced", params={"path": exc.path}, detail=str(exc))


def _changed(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size != after.st_size or before.st_mtime_ns != after.st_mtime_ns)
