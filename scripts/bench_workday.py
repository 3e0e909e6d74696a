"""The "working day" scenario of the snapshot benchmark (issue 9): what one day's change costs.

``scripts/bench_snapshot.py --working-day`` runs it; this module holds the scenario. On a
generated dataset (the same one, ``--scale`` and ``--seed``, as the rest of that script), each
round

1. puts the dataset back in its generated state ("day 0": the tree as generated and the
   database files from a copy taken the first time);
2. takes a first backup of day 0 with each tool, untimed for the comparison: ``siip-watcher
   once`` (a full, into the dataset's local dir), ``restic backup`` into a new repository and
   ``borg create`` (zstd level 3, no encryption) into a new repository;
3. applies one working day's change, the issue's: 500 scattered row updates (350 in
   ``personas``, 150 in ``expedientes``) and 40 inserts, each its own transaction as a web
   app commits them, with a connection open throughout as the running app keeps one; 12 new
   photos of 150-400 KB; 3 code edits; one deleted and one renamed document;
4. runs, interleaved in the order of ``--contenders``: ``delta`` (``once``, the
   second snapshot in the same local dir: a delta when the product makes one), ``restic``
   (its second backup), ``borg`` (its second create) and ``full`` (``once --full`` in the
   same dir, after the delta; plain ``once`` into an emptied dir on a checkout without
   ``--full``, which takes a full there), each timed: wall, CPU, peak RSS (``wait4``) and the
   bytes it added (our archive's size; the growth of the repository for restic and borg);
5. undoes the day.

The first round also measures the issue's lower-bound reference: the zstd (level 3) size of
the SQLite pages that differ between consistent copies (SQLite's backup API) of the database
before and after the day, plus that of the files the day added, edited or renamed.

restic and borg come from the Debian packages ``restic`` and ``borgbackup``: when one is
missing, the benchmark installs both with apt-get if it runs as root, and stops with what to
do otherwise. The undo information is written before the day is applied
(``working-day.json`` beside the dataset), so a benchmark killed half-way puts the dataset
back the next time it starts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import bench_snapshot as bs

CONTENDERS = ("delta", "restic", "borg", "full")
LABELS = {"delta": "siip-watcher once (delta)", "full": "siip-watcher once --full",
          "restic": "restic backup (2nd)", "borg": "borg create (2nd)"}
TARGETS = {
    "delta_over_chunkers_max": 0.1,       # at most 1/10 of restic's and of borg's added bytes
    "delta_over_reference_max": 1.3,      # at most 1.3x the changed pages + files, zstd
    "delta_over_restic_wall_max": 1.0,    # no slower than restic's second run
    "delta_over_full_wall_max": 0.5,      # at most half a full once
    "peak_rss_mb_max": 200.0,
    "rss_spread_max": 1.1,                # "flat from run to run": highest/lowest peak
}
JOURNAL = "working-day.json"     # beside the dataset: what to undo; present while a day is on
UNDO_DIR = "working-day-undo"    # originals of the edited and deleted files
DAY0_DIR = "day0"                # the database files as generated
WORK_DIR = "working-day"         # the repositories and caches of one round
DB_UPDATES = {"personas": 350, "expedientes": 150}
DB_INSERTS = 40
NEW_PHOTOS = 12
PHOTO_SIZES = (150_000, 400_000)
CODE_EDITS = 3
# a throwaway repository, deleted after each round: its password protects nothing
RESTIC_ENV = {"RESTIC_PASSWORD": "bench-working-day"}
BORG_ENV = {"BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}
#: the Debian packages that provide the chunking tools compared
PACKAGES = {"restic": "restic", "borg": "borgbackup"}


# --- the day's change: planned from the seed, applied, undone ---------------------------------


@dataclass(frozen=True)
class DayPlan:
    """The tree half of one working day's change (the database half is drawn as it is applied,
    from the rows the database holds)."""

    new_photos: list[bs.Entry]
    code_edits: list[str]        # files that get a few lines in their middle
    deleted: str
    renamed: tuple[str, str]


def plan_day(entries: Sequence[bs.Entry], seed: int) -> DayPlan:
    """Which files the day adds, edits, deletes and renames; the same seed, the same day."""
    rng = random.Random(f"working-day/{seed}")
    kept = [e for e in entries if not e.junk]
    photo_dirs = sorted({e.rel.rsplit("/", 1)[0] for e in kept
                         if e.kind == "photo" and e.rel.startswith("uploads/SIIP CON FOTO/")})
    code = sorted(e.rel for e in kept if e.kind == "py" and e.rel.startswith("app/"))
    docs = sorted(e.rel for e in kept if e.kind in ("json", "txt") and e.size > 0
                  and e.rel.startswith("uploads/documentos/"))
    new_photos = []
    for n in range(NEW_PHOTOS):
        folder = rng.choice(photo_dirs)
        new_photos.append(bs.Entry(f"{folder}/fotografía nueva {n + 1:03d}.jpg", "photo",
                                   rng.randint(*PHOTO_SIZES), rng.getrandbits(63)))
    deleted, renamed = rng.sample(docs, 2)
    stem, ext = renamed.rsplit(".", 1)
    return DayPlan(new_photos=new_photos, code_edits=rng.sample(code, CODE_EDITS),
                   deleted=deleted, renamed=(renamed, f"{stem} (corregido).{ext}"))


def _journal(ds: bs.Dataset) -> Path:
    return ds.home / JOURNAL


def apply_day(ds: bs.Dataset, plan: DayPlan, seed: int) -> dict[str, int]:
    """Change the tree and the database as one working day does; what the database got.

    The undo journal goes first, so a kill at any point leaves enough to put day 0 back.
    """
    undo = ds.home / UNDO_DIR
    shutil.rmtree(undo, ignore_errors=True)
    undo.mkdir()
    saved = {}
    for i, rel in enumerate([*plan.code_edits, plan.deleted]):
        src = ds.root / rel
        st = src.stat()
        shutil.copyfile(src, undo / str(i))
        saved[rel] = {"copy": str(i), "mtime_ns": st.st_mtime_ns, "mode": st.st_mode & 0o7777}
    _journal(ds).write_text(json.dumps({
        "new": [e.rel for e in plan.new_photos], "saved": saved,
        "renamed": list(plan.renamed)}, ensure_ascii=False, indent=1))

    rng = random.Random(f"working-day/{seed}/files")
    for e in plan.new_photos:
        (ds.root / e.rel).write_bytes(bs.content(e))
    for rel in plan.code_edits:
        path = ds.root / rel
        lines = path.read_text().splitlines(keepends=True)
        middle = len(lines) // 2
        words = " ".join(rng.choices(bs.PALABRAS, k=8))
        lines[middle:middle] = [f"    # {words}\n",
                                f"    limite = {rng.randint(1, 500)}  # antes {middle}\n"]
        path.write_text("".join(lines))
    (ds.root / plan.deleted).unlink()
    (ds.root / plan.renamed[0]).rename(ds.root / plan.renamed[1])
    return change_database(ds.db, seed)


def change_database(db: Path, seed: int) -> dict[str, int]:
    """The day's row updates and inserts, each in its own transaction."""
    rng = random.Random(f"working-day/{seed}/db")
    con = sqlite3.connect(db, isolation_level=None)
    try:
        done = {"updated": 0, "inserted": 0}
        top = {t: con.execute(f"SELECT min(id), max(id) FROM {t}").fetchone() for t in DB_UPDATES}
        for _ in range(DB_UPDATES["personas"]):
            row = con.execute(
                "UPDATE personas SET telefono = ?, notas = ?, actualizado_en = ? WHERE id = ?",
                (f"{rng.randint(200, 999)}{rng.randint(1_000_000, 9_999_999)}",
                 " ".join(rng.choices(bs.PALABRAS, k=rng.randint(0, 25))), bs._stamp(rng),
                 rng.randint(*top["personas"])))
            done["updated"] += row.rowcount
        for _ in range(DB_UPDATES["expedientes"]):
            row = con.execute(
                "UPDATE expedientes SET estado = ?, descripcion = ? WHERE id = "
                "(SELECT id FROM expedientes WHERE id >= ? ORDER BY id LIMIT 1)",
                (rng.choice(["pendiente", "atendido", "turnado", "archivado"]),
                 " ".join(rng.choices(bs.PALABRAS, k=rng.randint(10, 60))),
                 rng.randint(*top["expedientes"])))
            done["updated"] += row.rowcount
        rows = bs._db_batch(rng, top["personas"][1] + 1, DB_INSERTS)["personas"]
        marks = ",".join("?" * len(rows[0]))
        for r in rows:
            done["inserted"] += con.execute(f"INSERT INTO personas VALUES ({marks})", r).rowcount
    finally:
        con.close()   # not the last connection (the holder's is open): no checkpoint on close
    return done


def undo_day(ds: bs.Dataset) -> None:
    """Put the tree back as generated (after a finished or a killed day) and the database
    files back from the day-0 copy. Nothing may have the database open."""
    journal = _journal(ds)
    if journal.exists():
        day = json.loads(journal.read_text())
        undo = ds.home / UNDO_DIR
        for rel in day["new"]:
            (ds.root / rel).unlink(missing_ok=True)
        old, new = (ds.root / p for p in day["renamed"])
        if new.exists() and not old.exists():
            new.rename(old)
        for rel, s in day["saved"].items():
            path = ds.root / rel
            shutil.copyfile(undo / s["copy"], path)
            path.chmod(s["mode"])
            os.utime(path, ns=(s["mtime_ns"], s["mtime_ns"]))
        restore_day0_db(ds)
        shutil.rmtree(undo, ignore_errors=True)
        journal.unlink()
    elif (ds.home / DAY0_DIR).is_dir():
        restore_day0_db(ds)


def _db_files(db: Path) -> list[Path]:
    return [db, Path(f"{db}-wal")]


def save_day0_db(ds: bs.Dataset) -> None:
    """Keep a copy of the generated database files (once per generated dataset: a dataset
    generated again, which has a new database, replaces it)."""
    keep = ds.home / DAY0_DIR
    stamp = keep / "stamp.json"
    now = {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in _db_files(ds.db)
           if p.exists()}
    if stamp.exists() and json.loads(stamp.read_text()) == now:
        return
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir()
    for p in _db_files(ds.db):
        if p.exists():
            shutil.copy2(p, keep / p.name)          # copy2: the mtimes too, for the stamp
    stamp.write_text(json.dumps(now))


def restore_day0_db(ds: bs.Dataset) -> None:
    """The database files as generated; the stale ``-shm`` goes (SQLite rebuilds it from the
    ``-wal``)."""
    keep = ds.home / DAY0_DIR
    for p in _db_files(ds.db):
        if (keep / p.name).exists():
            shutil.copy2(keep / p.name, p)
        else:
            p.unlink(missing_ok=True)
    Path(f"{ds.db}-shm").unlink(missing_ok=True)


# --- the reference: changed pages and files, zstd ---------------------------------------------


def consistent_copy(db: Path, target: Path) -> None:
    """A point-in-time image of ``db`` with SQLite's backup API (pages keep their numbers)."""
    target.unlink(missing_ok=True)
    src = sqlite3.connect(db)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def changed_pages(before: Path, after: Path) -> tuple[list[bytes], int, int]:
    """The pages of ``after`` that differ from ``before`` (new pages included), the page
    count of ``after`` and the page size."""
    with sqlite3.connect(after) as con:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    changed = []
    total = 0
    with open(before, "rb") as old, open(after, "rb") as new:
        while page := new.read(page_size):
            total += 1
            if old.read(page_size) != page:
                changed.append(page)
    return changed, total, page_size


def zstd_size(chunks: Sequence[bytes]) -> int:
    """Bytes of ``chunks`` one after the other, compressed by ``zstd -3``."""
    out = subprocess.run(["zstd", "-q", "-3", "-c"], input=b"".join(chunks),
                         capture_output=True, check=True).stdout
    return len(out)


def reference(ds: bs.Dataset, plan: DayPlan, before: Path, after: Path) -> dict[str, Any]:
    """The issue's lower bound: changed pages + added, edited and renamed files, zstd -3."""
    pages, total, page_size = changed_pages(before, after)
    files = [(ds.root / rel).read_bytes()
             for rel in [*(e.rel for e in plan.new_photos), *plan.code_edits, plan.renamed[1]]]
    pages_z, files_z = zstd_size(pages), zstd_size(files)
    return {"pages_changed": len(pages), "pages_total": total, "page_size": page_size,
            "pages_zstd_bytes": pages_z, "files": len(files),
            "files_bytes": sum(len(f) for f in files), "files_zstd_bytes": files_z,
            "bytes": pages_z + files_z}


# --- the chunking tools -------------------------------------------------------------------------


def ensure_tools(names: Sequence[str]) -> None:
    """restic and borg from their Debian packages, installed when missing and root."""
    missing = [n for n in names if n in PACKAGES and shutil.which(n) is None]
    if not missing:
        return
    packages = sorted({PACKAGES[n] for n in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(f"{', '.join(missing)} not found: install the Debian package(s) "
                         f"{' '.join(packages)} (apt-get install {' '.join(packages)}) or leave "
                         f"{', '.join(missing)} out of --contenders")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    bs.log(f"installing {' '.join(packages)} with apt-get")
    install = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(install, env=env, check=True)


def tree_bytes(path: Path) -> int:
    """Bytes of every file under ``path``: what a repository holds."""
    return sum(os.lstat(os.path.join(d, n)).st_size
               for d, _, names in os.walk(path) for n in names)


def _timed(cmd: list[str], *, env: dict[str, str], cwd: Path,
           err_path: Path) -> tuple[bs.Sample, bytes]:
    with open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, cwd=cwd, env={**bs._clean_env(), **env})
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.stdout.close()
        code, usage = bs._wait(proc)
        wall = time.perf_counter() - started
    detail: dict[str, Any] = {"exit_code": code}
    if code != 0:
        detail["stderr_tail"] = err_path.read_text(errors="replace")[-1500:]
    return bs.Sample(wall, bs._cpu(usage), bs._rss_mb(usage), 0, code == 0, detail), stdout


class Chunker:
    """restic or borg with its repository and cache in ``work``: ``first()`` backs up day 0,
    ``second()`` the day after, measured; the bytes added are the repository's growth."""

    def __init__(self, tool: str, ds: bs.Dataset, work: Path) -> None:
        self.tool, self.ds = tool, ds
        self.repo = work / f"{tool}-repo"
        self.logs = ds.home / "logs"
        if tool == "restic":
            self.env = {**RESTIC_ENV, "RESTIC_REPOSITORY": str(self.repo),
                        "RESTIC_CACHE_DIR": str(work / "restic-cache")}
        else:
            self.env = {**BORG_ENV, "BORG_BASE_DIR": str(work / "borg-base")}
        init = (["restic", "init", "-q"] if tool == "restic"
                else ["borg", "init", "--encryption=none", str(self.repo)])
        subprocess.run(init, env={**bs._clean_env(), **self.env}, check=True,
                       stdout=subprocess.DEVNULL)
        self.runs = 0

    def _command(self) -> list[str]:
        if self.tool == "restic":
            excludes = [f"--exclude={p.strip('/')}" for p in bs.EXCLUDES if "/" not in
                        p.strip("/")]
            anchored = [f"--exclude={self.ds.root / p.strip('/')}" for p in bs.EXCLUDES
                        if "/" in p.strip("/")]
            return ["restic", "backup", "--json", *excludes, *anchored, str(self.ds.root)]
        excludes = [f"--exclude=sh:**/{p.strip('/')}" if "/" not in p.strip("/")
                    else f"--exclude={p.strip('/')}" for p in bs.EXCLUDES]
        return ["borg", "create", "--compression", "zstd,3", "--json", *excludes,
                f"{self.repo}::day{self.runs}", "."]

    def backup(self) -> bs.Sample:
        """One backup of the tree as it is now, timed; output_bytes is what it added."""
        before = tree_bytes(self.repo)
        sample, stdout = _timed(self._command(), env=self.env, cwd=self.ds.root,
                                err_path=self.logs / f"{self.tool}.stderr")
        self.runs += 1
        sample.output_bytes = tree_bytes(self.repo) - before
        sample.detail.update(self._stats(stdout))
        return sample

    def _stats(self, stdout: bytes) -> dict[str, Any]:
        # the tool's own count, for the record beside the repository's growth
        text = stdout.decode(errors="replace")
        try:
            if self.tool == "restic":
                summary = [json.loads(line) for line in text.splitlines()
                           if '"summary"' in line][-1]
                return {"data_added": summary.get("data_added"),
                        "files_new": summary.get("files_new"),
                        "files_changed": summary.get("files_changed")}
            stats = json.loads(text)["archive"]["stats"]
            return {"deduplicated_size": stats.get("deduplicated_size"),
                    "nfiles": stats.get("nfiles")}
        except (ValueError, KeyError, IndexError):
            return {"stdout_tail": text[-500:]}


# --- one round, the rounds, the ratios ----------------------------------------------------------


def supports_full(watcher: list[str]) -> bool:
    """Whether this checkout's ``once`` takes ``--full`` (issue 9)."""
    out = subprocess.run([*watcher, "once", "--help"], capture_output=True, text=True,
                         cwd=bs.REPO, env=bs._clean_env(), check=False).stdout
    return "--full" in out


@dataclass
class Round:
    """What one round measured."""

    first: dict[str, dict[str, Any]]       # day 0, per tool: the untimed first backups
    day: dict[str, dict[str, Any]]         # the measured contenders
    database: dict[str, int]


def one_round(ds: bs.Dataset, plan: DayPlan, *, seed: int,  # noqa: PLR0913 - options, named
              contenders: Sequence[str], watcher: list[str], full_flag: bool,
              want_reference: bool) -> tuple[Round, dict[str, Any] | None]:
    """Day 0, the first backups, the day's change, the measured contenders, undo."""
    logs = ds.home / "logs"
    logs.mkdir(exist_ok=True)
    work = ds.home / WORK_DIR
    undo_day(ds)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(ds.local_dir, ignore_errors=True)
    work.mkdir()
    ref = None
    holder = bs.DatabaseHolder(ds.db)
    try:
        first: dict[str, bs.Sample] = {}
        first["once"] = bs.run_once(ds, watcher, logs)
        tools = {t: Chunker(t, ds, work) for t in ("restic", "borg") if t in contenders}
        for name, tool in tools.items():
            first[name] = tool.backup()
        if want_reference:
            consistent_copy(ds.db, work / "day0.db")
        database = apply_day(ds, plan, seed)
        if want_reference:
            consistent_copy(ds.db, work / "day1.db")
            ref = reference(ds, plan, work / "day0.db", work / "day1.db")
            for p in ("day0.db", "day1.db"):
                (work / p).unlink()
        runners: dict[str, Callable[[], bs.Sample]] = {
            "delta": lambda: bs.run_once(ds, watcher, logs, fresh=False),
            "full": lambda: bs.run_once(ds, watcher, logs, fresh=not full_flag,
                                        extra=["--full"] if full_flag else []),
            **{name: tool.backup for name, tool in tools.items()},
        }
        day: dict[str, bs.Sample] = {}
        for name in _ordered(contenders):
            os.sync()                        # no earlier write-back lands inside a timing
            day[name] = runners[name]()
            s = day[name]
            kind = f"  {s.detail.get('kind')}" if name in ("delta", "full") else ""
            bs.log(f"  {name:6s} {s.wall_s:7.2f} s  cpu {s.cpu_s:6.2f} s  rss "
                   f"{s.peak_rss_mb:6.1f} MB  added {s.output_bytes / bs.MB:9.2f} MB{kind}"
                   + ("" if s.ok else "  FAILED"))
            if not s.ok:
                bs.log(f"    {json.dumps(s.detail, ensure_ascii=False)[:2000]}")
    finally:
        holder.close()
        undo_day(ds)
    return Round({k: asdict(v) for k, v in first.items()},
                 {k: asdict(v) for k, v in day.items()}, database), ref


def _ordered(contenders: Sequence[str]) -> list[str]:
    # the full shares the delta's local dir, so it must come after the delta: had it run
    # first, the delta would be taken against it, a day with no change
    order = list(contenders)
    if "delta" in order and "full" in order and order.index("full") < order.index("delta"):
        order.remove("full")
        order.insert(order.index("delta") + 1, "full")
    return order


def bench_working_day(ds: bs.Dataset, contenders: Sequence[str], repeat: int, seed: int,
                      watcher: list[str]) -> dict[str, Any]:
    """``repeat`` rounds of the working day on one dataset; medians, peaks and the reference."""
    ensure_tools(contenders)
    full_flag = supports_full(watcher)
    undo_day(ds)                         # a killed earlier run's day first, then keep day 0
    save_day0_db(ds)
    plan = plan_day(bs.plan_tree(seed, ds.scale, ds.mix), seed)
    bs.log(f"scale {ds.scale}: working day, {repeat} rounds; once "
           f"{'--full' if full_flag else '(no --full in this checkout: into an empty dir)'}")
    load_before = os.getloadavg()
    rounds: list[Round] = []
    ref: dict[str, Any] | None = None
    for i in range(repeat):
        bs.log(f" round {i + 1}")
        r, got = one_round(ds, plan, seed=seed, contenders=contenders, watcher=watcher,
                           full_flag=full_flag, want_reference=ref is None)
        ref = ref or got
        rounds.append(r)
    load_after = os.getloadavg()
    shutil.rmtree(ds.home / WORK_DIR, ignore_errors=True)
    shutil.rmtree(ds.local_dir, ignore_errors=True)
    day = {name: _summary([r.day[name] for r in rounds]) for name in contenders}
    first = {name: _summary([r.first[name] for r in rounds]) for name in rounds[0].first}
    result = {"scale": ds.scale, "dataset": ds.summary, "full_flag": full_flag,
              "change": {"database": rounds[0].database, "new_photos": len(plan.new_photos),
                         "new_photo_bytes": sum(e.size for e in plan.new_photos),
                         "code_edits": plan.code_edits, "deleted": plan.deleted,
                         "renamed": list(plan.renamed)},
              "reference": ref, "loadavg_before": [round(x, 2) for x in load_before],
              "loadavg_after": [round(x, 2) for x in load_after],
              "first": first, "contenders": day}
    result["ratios"] = ratios(result)
    return result


def _summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if r["ok"]] or list(runs)
    return {"ok": all(r["ok"] for r in runs),
            "wall_s": round(statistics.median(r["wall_s"] for r in good), 3),
            "cpu_s": round(statistics.median(r["cpu_s"] for r in good), 3),
            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in good), 1),
            "output_bytes": int(statistics.median(r["output_bytes"] for r in good)),
            "kinds": sorted({str(r["detail"].get("kind")) for r in good
                             if "kind" in r["detail"]}),
            "runs": list(runs)}


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets for the working day, each with its value and whether it is met."""
    c, ref, out = result["contenders"], result["reference"], {}
    if "delta" not in c:
        return out
    delta = c["delta"]

    def add(key: str, value: float, target: str, met: bool | None) -> None:
        out[key] = {"value": round(value, 3), "target": target, "met": met}

    for tool in ("restic", "borg"):
        if tool in c and c[tool]["output_bytes"]:
            v = delta["output_bytes"] / c[tool]["output_bytes"]
            add(f"delta_over_{tool}_bytes", v, "<= 0.1", v <= TARGETS["delta_over_chunkers_max"])
    if ref and ref["bytes"]:
        v = delta["output_bytes"] / ref["bytes"]
        add("delta_over_reference_bytes", v, "<= 1.3", v <= TARGETS["delta_over_reference_max"])
    if "restic" in c:
        v = delta["wall_s"] / c["restic"]["wall_s"]
        add("delta_over_restic_wall", v, "<= 1", v <= TARGETS["delta_over_restic_wall_max"])
    if "full" in c:
        v = delta["wall_s"] / c["full"]["wall_s"]
        add("delta_over_full_wall", v, "<= 0.5", v <= TARGETS["delta_over_full_wall_max"])
        add("delta_over_full_bytes", delta["output_bytes"] / c["full"]["output_bytes"],
            "(information)", None)
    rss = [r["peak_rss_mb"] for r in delta["runs"] if r["ok"]]
    if rss:
        add("peak_rss_delta_mb", max(rss), "< 200", max(rss) < TARGETS["peak_rss_mb_max"])
        spread = max(rss) / min(rss)
        add("peak_rss_delta_spread", spread, "<= 1.1 (flat)",
            spread <= TARGETS["rss_spread_max"])
    return out


def print_working_day(results: Sequence[dict[str, Any]], repeat: int) -> None:
    """The table: per contender, the median wall, CPU, bytes added and the highest RSS."""
    for res in results:
        d, ch, ref = res["dataset"], res["change"], res["reference"]
        print(f"\nscale {res['scale']}x working day: {d['files']:,} files, database "
              f"{d['db_bytes'] / 1e6:.0f} MB; the day: {ch['database']['updated']} rows updated,"
              f" {ch['database']['inserted']} inserted, {ch['new_photos']} new photos "
              f"({ch['new_photo_bytes'] / 1e6:.2f} MB), {len(ch['code_edits'])} code edits, "
              f"1 deleted, 1 renamed")
        print(f"load average {res['loadavg_before']} -> {res['loadavg_after']}; median of "
              f"{repeat} rounds")
        if ref:
            print(f"reference: {ref['pages_changed']:,} of {ref['pages_total']:,} pages changed "
                  f"({ref['pages_zstd_bytes'] / bs.MB:.2f} MB zstd) + {ref['files']} files "
                  f"({ref['files_zstd_bytes'] / bs.MB:.2f} MB zstd) = "
                  f"{ref['bytes'] / bs.MB:.2f} MB")
        print(f"{'contender':28s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MB':>12s} "
              f"{'added MB':>10s}  kind")
        for name, c in res["contenders"].items():
            flag = "" if c["ok"] else "  (FAILED runs)"
            print(f"{LABELS[name]:28s} {c['wall_s']:8.2f} {c['cpu_s']:8.2f} "
                  f"{c['peak_rss_mb']:12.1f} {c['output_bytes'] / bs.MB:10.2f}  "
                  f"{','.join(c['kinds'])}{flag}")
        for name, c in res["first"].items():
            print(f"  (day 0, first backup: {name} {c['wall_s']:.2f} s, "
                  f"{c['output_bytes'] / bs.MB:.1f} MB)")
        for key, r in res["ratios"].items():
            met = {True: "met", False: "MISSED", None: ""}[r["met"]]
            print(f"  {key:28s} {r['value']:>8}  target {r['target']:14s} {met}")
