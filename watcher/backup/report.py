"""The result of one backup run: what the CLI prints, the catalog stores and the email tells.

Plain data only; no I/O here. Each problem carries one line on what to do about it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

# exit codes, as the README's "Exit codes" table gives them
EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_DESTINATION_PENDING = 3

TRIGGERS = ("manual", "start", "interval", "change")


#: what a failure was about, for people who do not read the technical line (the email says it
#: in plain words in its own language): see ``cause_*`` in watcher/notify/texts.py
CAUSES = ("source_missing", "database_missing", "database_damaged", "database_unreadable",
          "disk_full", "write_failed", "stopped", "backup_dir", "catalog", "busy", "unexpected",
          "watch", "schedule_disabled", "web_listen")

#: what a report is about: a backup run, or the service's start (no run took place)
PHASES = ("run", "start")

#: how much a concern matters, most first, so an email opens with the most important one (a
#: failed upload before a prune listing that failed; watcher/notify/message.py):
#: alert - a data-loss alert; failed - a copy or a step of the run that did not happen and
#: will not on its own; pending - a copy waiting for its retry; incomplete - the snapshot lacks
#: a file or may mix old and new content; upkeep - pruning, the clock, the catalog's upkeep
SEVERITY = ("alert", "failed", "pending", "incomplete", "upkeep")

#: every :attr:`Problem.key` and its :data:`SEVERITY`; the email's words for each are
#: ``problem_<key>`` (and ``problem_<key>_hint``) in watcher/notify/texts.py
PROBLEM_KEYS: dict[str, str] = {
    "data_loss_database_empty": "alert",
    "data_loss_database_emptied": "alert",
    "data_loss_database_shrunk": "alert",
    "data_loss_tree_changed": "alert",
    "data_loss_incompressible": "alert",
    "after_snapshot": "failed",
    "catalog_unusable": "failed",
    "catalog_damaged": "failed",
    "stopped": "failed",
    "read_failed": "incomplete",
    "not_a_file": "incomplete",
    "vanished": "incomplete",
    "found_database_as_files": "incomplete",
    "file_changed": "incomplete",
    "file_shrank": "incomplete",
    "file_replaced": "incomplete",
    "catalog_rebuilt": "upkeep",
    "prune_held": "upkeep",
    "future_snapshot": "upkeep",
    "prune_list_failed": "upkeep",
    "prune_delete_failed": "upkeep",
    "trashed_instead": "upkeep",
    "local_not_encrypted": "upkeep",
}

#: every :attr:`DestinationResult.key`: what to do about a copy, ``dest_hint_<key>`` in
#: watcher/notify/texts.py
DESTINATION_KEYS = ("unavailable", "no_upload", "stopping", "failed_earlier", "archive_missing",
                    "retry_at", "fix_cause", "waits_for_base", "base_gone")


def printable(text: str) -> str:
    """``text`` safe for UTF-8 output (email, log file, status): a file-name byte that is not
    UTF-8, which Python carries as a lone surrogate (``surrogateescape``), shows as ``\\xNN``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
        return raw.decode("utf-8", "backslashreplace")
    return text


Params = dict[str, str | int]
"""The values a translated text is filled with: names, paths and ids as text, counts as
ints (each language writes its own thousands separator)."""


@dataclass
class Problem:
    """A warning or an error: what happened, one line on what to do, and its cause.

    ``message`` and ``hint`` are English, for the log, the CLI and the catalog. The email
    says it in the admin's language: the words of ``key`` (:data:`PROBLEM_KEYS`) filled from
    ``params``, or, with no key, the words of ``cause`` (the message then being technical
    detail). ``detail`` is text from outside (an exception, the system, a server) that no
    translation can carry; the email shows it labelled as such.

    The texts are made printable on creation: they name files, and a name that is not UTF-8
    would otherwise make the email, the log file and the catalog fail on the whole report.
    """

    message: str
    hint: str = ""
    cause: str = ""
    key: str = ""
    params: Params = field(default_factory=dict)
    detail: str = ""

    def __post_init__(self) -> None:
        self.message = printable(self.message)
        self.hint = printable(self.hint)
        self.detail = printable(self.detail)
        self.params = printable_params(self.params)

    @property
    def severity(self) -> int:
        """Its place in :data:`SEVERITY` (0 matters most). With no key it is a step that
        failed on an exception (the cause says which)."""
        return SEVERITY.index(PROBLEM_KEYS.get(self.key, "failed"))


def printable_params(params: Params) -> Params:
    """``params`` with every text made :func:`printable`."""
    return {k: printable(v) if isinstance(v, str) else v for k, v in params.items()}


@dataclass
class DatabaseResult:
    """One database as it went into the snapshot."""

    path: str          # as configured (relative to the root, or absolute); found: under root
    member: str        # archive member name, databases/<file name>
    pages: int
    page_size: int
    size: int
    check: str         # "ok", or what the check said
    check_pragma: str = "integrity_check"   # which PRAGMA checked the copy
    #: found under source.root by its header, not listed in source.databases
    discovered: bool = False
    #: a delta's page delta against its base full (None in a full, whose manifest keeps
    #: exactly the keys above): the sha256, mode and mtime of the snapshot's consistent copy,
    #: the member holding the changed pages, the base's member they apply to, and how many
    sha256: str | None = None
    mode: int | None = None
    mtime_ns: int | None = None
    pages_member: str | None = None
    base_member: str | None = None
    changed_pages: int | None = None

    def record(self) -> dict[str, Any]:
        """The manifest's and the catalog's form: a full's keys, plus a page delta's."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class SnapshotInfo:
    """The archive a run stored locally."""

    id: str
    file: str                      # absolute path of the .tar.zst (.delta.tar.zst)
    created_at: datetime
    size: int                      # bytes of the archive
    sha256: str
    files: int                     # members under files/ (regular files, links, folders)
    bytes_in: int                  # uncompressed bytes of every member
    databases: list[DatabaseResult] = field(default_factory=list)
    kind: str = "full"             # "full", or "delta": only the changes since ``base``
    base: str | None = None        # a delta's full snapshot id; None for a full

    @property
    def is_delta(self) -> bool:
        return self.kind == "delta"

    @property
    def ratio(self) -> float:
        """Uncompressed over compressed size (2.0 means half the size)."""
        return self.bytes_in / self.size if self.size else 0.0


@dataclass
class DestinationResult:
    """Where one destination's copy of the snapshot stands after the run."""

    name: str
    state: str                     # uploaded, pending, failed, skipped
    link: str | None = None
    error: str | None = None       # the destination's own words (technical, English)
    hint: str | None = None        # English, for the log and the CLI
    snapshot_id: str | None = None
    #: what to do in the email's words: ``dest_hint_<key>`` (:data:`DESTINATION_KEYS`)
    key: str = ""
    params: Params = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.params = printable_params(self.params)


@dataclass
class RunReport:
    """Everything about one run, from start to notification."""

    name: str
    trigger: str
    started_at: datetime
    finished_at: datetime | None = None
    status: str = "running"        # ok, warning, failed
    snapshot: SnapshotInfo | None = None
    warnings: list[Problem] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    destinations: list[DestinationResult] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    free_bytes: int | None = None
    next_run: datetime | None = None
    previous_status: str | None = None   # of the run before this one, for "recovery"
    #: a data-loss alert holding pruning (watcher.backup.canary.Hold.to_dict() plus "event":
    #: raised, raised again or held, and "kinds": the canaries this run raised), else None
    alert: dict[str, Any] | None = None
    phase: str = "run"                   # "start": the service could not start (PHASES)

    @property
    def duration(self) -> float:
        """Seconds from start to finish (to now while running)."""
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()

    @property
    def recovered(self) -> bool:
        """The first good run after one or more failed runs."""
        return self.status != "failed" and self.previous_status == "failed"

    @property
    def exit_code(self) -> int:
        """0 all done; 1 no new snapshot; 3 stored locally but a destination is pending."""
        if self.status == "failed" or self.snapshot is None:
            return EXIT_RUN_FAILED
        if any(d.state in ("pending", "failed") for d in self.destinations):
            return EXIT_DESTINATION_PENDING
        return EXIT_OK

    def finish(self, now: datetime) -> None:
        """Close the report and settle its status from what it holds."""
        self.finished_at = now
        if self.snapshot is None or self.errors:
            self.status = "failed"
        elif self.warnings or any(d.state not in ("uploaded", "skipped")
                                  for d in self.destinations):
            self.status = "warning"
        else:
            self.status = "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (datetimes as ISO 8601)."""
        data = asdict(self)
        data["duration_seconds"] = round(self.duration, 3)
        data["exit_code"] = self.exit_code
        data["recovered"] = self.recovered
        if self.snapshot:
            data["snapshot"]["ratio"] = round(self.snapshot.ratio, 3)
        return _jsonable(data)


def describe_kind(snapshot: SnapshotInfo) -> str:
    """"full", or "delta of <base id>", for logs and the command line (the email says it in
    the admin's language: watcher/notify/texts.py)."""
    return f"delta of {snapshot.base}" if snapshot.is_delta else "full"


def destination_states(destinations: list[DestinationResult]) -> list[str]:
    """Each destination once, with how its copies stand: "drive failed", "drive failed (2
    copies)" when a queued older copy failed too, "drive 1 uploaded and 1 failed"."""
    by_name: dict[str, dict[str, int]] = {}
    for d in destinations:
        states = by_name.setdefault(d.name, {})
        states[d.state] = states.get(d.state, 0) + 1
    out = []
    for name, states in by_name.items():
        if len(states) == 1:
            [(state, count)] = states.items()
            out.append(f"{name} {state}" + (f" ({count} copies)" if count > 1 else ""))
        else:
            out.append(f"{name} " + " and ".join(f"{n} {s}" for s, n in states.items()))
    return out


_THOUSAND = 1000  # decimal units: each is a thousand of the one below


def human_size(n: int) -> str:
    """Bytes for a log line or `status`: 1000-based, one decimal ("48.2 MB")."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < _THOUSAND:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= _THOUSAND
    return f"{value:.1f} TB"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
