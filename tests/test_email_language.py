"""Every line of the email in the admin's language (issue 10).

Each message kind (success, warning, failure, recovery, start failed, data-loss alert, test
email) is rendered with every cause, every problem key and every destination state in Spanish
and in English, and a small detector fails on a word of the other language. The only English
allowed in a Spanish email is text from outside (an exception's or a server's own words) on
a line labelled as the technical detail, and the filter tokens of the subject.

It also holds the rules that keep it so: every ``Problem(...)`` in watcher/ has a key (or a
cause) whose words exist in both languages with the same placeholders, and the most important
concern comes first.
"""

from __future__ import annotations

import ast
import html
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, make_config
from watcher.backup.report import (
    CAUSES,
    DESTINATION_KEYS,
    PROBLEM_KEYS,
    SEVERITY,
    DatabaseResult,
    DestinationResult,
    Problem,
    RunReport,
    SnapshotInfo,
)
from watcher.config.settings import Config
from watcher.notify import policy
from watcher.notify.message import (
    build_report_message,
    build_test_message,
    concerns,
    fill,
)
from watcher.notify.texts import LANGUAGES, SUBJECT_STATUS, TEXTS

STARTED = datetime(2026, 11, 27, 18, 15, tzinfo=UTC)
NEW = "siip-20261127T181500Z"
OLD = "siip-20261126T181500Z"

#: a value for every placeholder a problem or destination text may have
SAMPLE: dict[str, str | int] = {
    "path": "/srv/siip/static/uploads/foto_1234.jpg", "dest": "drive", "sid": OLD,
    "file": "catalog.sqlite3.damaged-20261127", "name": "catalog.sqlite3",
    "since": "2026-11-26 09:00 UTC", "now": "2026-11-27 18:15 UTC",
    "when": "2026-11-27 18:20 UTC", "before": 78_125, "pages": 1_200, "share": 64,
    "gone": 1_200, "changed": 9_800, "level": 30, "sampled": 40, "incompressible": 38,
    "bytes": 4_096, "base": "siip-20261125T181500Z",
}

#: outside text the reports below carry; only these may follow a technical-detail label
OUTSIDE = {
    "detail": "[Errno 13] Permission denied: '/srv/siip/static/uploads/foto_1234.jpg'",
    "http": "HTTP 503 from Google: backend error, try again later",
    "sqlite": "row 3 missing from index sqlite_autoindex_users_1",
}

# --- the detector ---------------------------------------------------------------------------

#: common English words no Spanish line should hold (names, paths and ids are skipped)
_ENGLISH = """
the and could not was were is are it its to of for with from when then this that next run
fix cause failed pending uploaded skipped pruned list delete deleted copy backup backups file
files folder read check what do nothing none unknown after before kept will be has have been
by on at in or if see detail technical step queued stays try database service again changed
while being snapshot older alert data loss free space disk set your you more than
"""
#: common Spanish words no English line should hold
_SPANISH = """
de la el los las que se en una un por para con copia copias falló qué hacer revisar está
ejecución carpeta archivo archivos próxima cuando pero sin hay del al y su sus lo ya desde
tras ninguna servidor estado motivo inicio duración destinos avisos errores detalle técnico
"""
ENGLISH, SPANISH = frozenset(_ENGLISH.split()), frozenset(_SPANISH.split())
ACCENTS = re.compile(r"[áéíóúñü¿¡]", re.IGNORECASE)
DETAIL_LABEL = {"es": "Detalle técnico (en inglés): ", "en": "Technical detail: "}
#: every text found after a technical-detail label, for the test to check afterwards
TECHNICAL: list[str] = []


def words(line: str) -> Iterator[str]:
    """The words of ``line`` that are words of a language: commands and config values in
    backquotes, paths, ids, numbers, options and file names are left out."""
    line = re.sub(r"`[^`]*`", " ", line)
    for raw in line.split():
        token = raw.strip(".,;:()[]\"'→")
        if token and not re.search(r"[\d/\\._@=<>*+-]", token):
            yield token.lower()


def foreign(lang: str, line: str) -> list[str]:
    """The words of ``line`` that belong to the other language."""
    if lang == "es":
        return [w for w in words(line) if w in ENGLISH]
    return [w for w in words(line) if w in SPANISH or ACCENTS.search(w)]


def checked_lines(lang: str, body: str) -> list[str]:
    """The lines of a rendered body a reader reads, each cut at its technical-detail label
    (what follows is outside text, which must be one of :data:`OUTSIDE` or a cause's
    technical line)."""
    out = []
    for line in body.splitlines():
        head, label, tail = line.partition(DETAIL_LABEL[lang])
        if label:
            assert tail.strip(), line
            TECHNICAL.append(tail)
        out.append(head + label)
    return out


def html_lines(page: str) -> str:
    """The HTML part as the lines a reader sees."""
    page = re.sub(r"<head>.*?</head>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "\n", page))


def assert_in_language(lang: str, msg: Any) -> None:
    plain = msg.get_body(("plain",)).get_content()
    page = msg.get_body(("html",)).get_content()
    for body in (plain, html_lines(page)):
        bad = [(line, foreign(lang, line)) for line in checked_lines(lang, body)
               if foreign(lang, line)]
        assert not bad, f"{lang}: {bad}"
    # the subject: the product tag and the status word stay, for mail filters
    subject = str(msg["Subject"]).removeprefix("[SIIP Backup] ")
    for token in (*SUBJECT_STATUS.values(), "TEST"):
        subject = subject.replace(token, "")
    assert not foreign(lang, subject), msg["Subject"]


def test_the_detector_catches_what_the_issue_quotes() -> None:
    for line in ("Qué revisar: could not list drive to prune it",
                 "Qué hacer: it is pruned on the next run that reaches it",
                 "Qué hacer: fix the cause, then run `siip-watcher once`"):
        assert foreign("es", line), line
    assert foreign("en", "What to check: drive: falló")
    assert foreign("en", "What failed: no se pudo leer la base de datos")
    assert not foreign("es", "Qué hacer: ejecute `siip-watcher once` (/srv/siip, 1.234 MB)")


# --- reports of every kind --------------------------------------------------------------------


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def sample(template_keys: list[str]) -> dict[str, str | int]:
    needed = set().union(*(placeholders(TEXTS[lang][k]) for lang in LANGUAGES
                           for k in template_keys if k in TEXTS[lang]))
    missing = needed - SAMPLE.keys()
    assert not missing, f"add a sample value for {missing}"
    return {k: SAMPLE[k] for k in needed}


def every_problem() -> list[Problem]:
    problems = []
    for i, key in enumerate(PROBLEM_KEYS):
        params = sample([f"problem_{key}", f"problem_{key}_hint"])
        problems.append(Problem(f"English log line for {key}", "English hint", key=key,
                                params=params, detail=OUTSIDE["detail"] if i % 2 else ""))
    return problems


def every_destination() -> list[DestinationResult]:
    results = []
    for key in DESTINATION_KEYS:
        for state in ("pending", "failed", "skipped"):
            results.append(DestinationResult(
                "drive", state, error=OUTSIDE["http"], hint="English hint",
                snapshot_id=OLD if state == "failed" else NEW, key=key,
                params=sample([f"dest_hint_{key}"])))
    results.append(DestinationResult("nas", "uploaded", link="https://example.test/x",
                                     snapshot_id=NEW))
    return results


def snapshot(check: str = "ok") -> SnapshotInfo:
    return SnapshotInfo(
        id=NEW, file=f"/var/backups/siip/{NEW}.tar.zst", created_at=STARTED,
        size=48_200_000, sha256="ab" * 32, files=15_234, bytes_in=131_000_000,
        databases=[DatabaseResult("siip_database.db", "databases/siip_database.db", 78_125,
                                  4096, 320_000_000, check, "quick_check")])


def report(**changes: Any) -> RunReport:
    r = RunReport(name="siip", trigger="change", started_at=STARTED, snapshot=snapshot(),
                  destinations=[DestinationResult("drive", "uploaded", snapshot_id=NEW,
                                                  link="https://drive.example.test/1")],
                  kept=[NEW, OLD], pruned=["siip-20261101T181500Z"], free_bytes=10**11,
                  next_run=STARTED + timedelta(hours=24))
    for key, value in changes.items():
        setattr(r, key, value)
    r.finish(STARTED + timedelta(seconds=83))
    return r


def failed(problem: Problem | None, **changes: Any) -> RunReport:
    return report(snapshot=None, destinations=[], kept=[], pruned=[],
                  errors=[problem] if problem else [], **changes)


def every_message(cfg: Config) -> Iterator[tuple[str, Any]]:
    """(what, message) for every kind of email and everything each can say."""
    yield "success", build_report_message(cfg, report(), policy.SUCCESS, host="srv1")
    yield "recovery", build_report_message(cfg, report(previous_status="failed"),
                                           policy.RECOVERY, host="srv1")
    alert = {"raised_at": STARTED.isoformat(), "last_raised_at": STARTED.isoformat(),
             "snapshot_id": NEW, "reasons": ["the database siip_database.db is empty"],
             "event": "raised",
             "kinds": ["database_empty", "database_shrunk", "tree_changed", "incompressible"]}
    warning = report(warnings=every_problem(), destinations=every_destination(), alert=alert,
                     snapshot=snapshot(OUTSIDE["sqlite"]))
    assert warning.status == "warning"
    yield "warning", build_report_message(cfg, warning, policy.WARNING, host="srv1")
    for cause in CAUSES:
        problem = Problem(f"technical line for {cause}", cause=cause)
        yield f"failure {cause}", build_report_message(cfg, failed(problem), policy.FAILURE,
                                                       host="srv1")
        yield f"start {cause}", build_report_message(cfg, failed(problem, phase="start"),
                                                     policy.FAILURE, host="srv1")
    for problem in every_problem():
        yield f"failure {problem.key}", build_report_message(cfg, failed(problem),
                                                             policy.FAILURE, host="srv1")
    yield "failure unknown", build_report_message(cfg, failed(None), policy.FAILURE,
                                                  host="srv1")
    untranslated = Problem("an English line nobody gave words to", "an English hint")
    yield "untranslated", build_report_message(cfg, failed(untranslated), policy.FAILURE,
                                               host="srv1")
    for security in ("starttls", "ssl", "none"):
        tested = make_config(cfg.source.root, cfg.local.dir, check_paths=False,
                             email={"language": cfg.email.language, "security": security})
        yield f"test {security}", build_test_message(tested, STARTED, host="srv1")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_line_of_every_message_is_in_the_admins_language(lang: str,
                                                              tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "src", tmp_path / "backups", check_paths=False,
                      email={"language": lang})
    TECHNICAL.clear()
    for what, msg in every_message(cfg):
        try:
            assert_in_language(lang, msg)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from None
    # what follows a technical-detail label is only ever text from outside
    allowed = {*OUTSIDE.values(), "an English line nobody gave words to; an English hint"}
    allowed |= {f"technical line for {cause}" for cause in CAUSES}
    assert TECHNICAL and set(TECHNICAL) <= allowed, set(TECHNICAL) - allowed


def test_a_spanish_warning_tells_the_issues_cases_in_spanish(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "src", tmp_path / "backups", check_paths=False,
                      email={"language": "es"})
    listing = Problem("could not list drive to prune it: HTTP 500",
                      "it is pruned on the next run that reaches it",
                      key="prune_list_failed", params={"dest": "drive"}, detail="HTTP 500")
    upload = DestinationResult("drive", "failed", error="quota exceeded", snapshot_id=NEW,
                               hint="fix the cause, then run `siip-watcher once`",
                               key="fix_cause", params={"when": "2026-11-28 00:15 UTC"})
    msg = build_report_message(cfg, report(warnings=[listing], destinations=[upload]),
                               policy.WARNING, host="srv1")
    plain = msg.get_body(("plain",)).get_content()
    assert "no se pudo ver qué copias hay en drive para borrar allí las antiguas." in plain
    assert "Qué hacer: se borrarán en la próxima ejecución que llegue a drive." in plain
    assert "Qué hacer: corrija la causa (vea el detalle técnico) y luego ejecute" in plain
    assert "Detalle técnico (en inglés): HTTP 500" in plain
    for english in ("could not list", "pruned on the next run", "fix the cause"):
        assert english not in plain


# --- the most important concern first --------------------------------------------------------


def problem(key: str) -> Problem:
    return Problem(f"log line for {key}", key=key,
                   params=sample([f"problem_{key}", f"problem_{key}_hint"]))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_failed_upload_outranks_a_failed_prune_listing(lang: str, tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "src", tmp_path / "backups", check_paths=False,
                      email={"language": lang})
    # pruning runs after the upload and lists its warning first: the email must not follow
    r = report(warnings=[problem("prune_list_failed"), problem("file_changed")],
               destinations=[DestinationResult("drive", "failed", error="quota exceeded",
                                               snapshot_id=NEW, key="fix_cause",
                                               params={"when": "2026-11-28 00:15 UTC"})])
    plain = build_report_message(cfg, r, policy.WARNING, host="srv1") \
        .get_body(("plain",)).get_content()
    lines = plain.splitlines()
    failed_word = TEXTS[lang]["dest_failed"]
    assert lines[1] == TEXTS[lang]["what_to_check"].format(message=f"drive: {failed_word}")
    assert lines[2].startswith(TEXTS[lang]["what_to_do"].format(hint=""))
    # and the warnings section lists the file before the upkeep
    section = plain[plain.index(TEXTS[lang]["section_warnings"]):]
    changed = section.index(SAMPLE["path"])   # type: ignore[arg-type]
    listing = section.index(str(SAMPLE["dest"]))
    assert changed < listing


def test_the_severity_order_is_alert_failed_pending_incomplete_upkeep() -> None:
    assert SEVERITY == ("alert", "failed", "pending", "incomplete", "upkeep")
    assert set(PROBLEM_KEYS.values()) <= set(SEVERITY)
    one_per_level = {level: next(k for k, v in PROBLEM_KEYS.items() if v == level)
                     for level in ("alert", "failed", "incomplete", "upkeep")}
    # given least important first, each level's concern comes out in SEVERITY's order
    r = report(warnings=[problem(one_per_level["upkeep"]), problem(one_per_level["incomplete"]),
                         problem(one_per_level["failed"]), problem(one_per_level["alert"])],
               destinations=[
                   DestinationResult("nas", "pending", snapshot_id=NEW, key="retry_at",
                                     params={"when": "later"}),
                   DestinationResult("drive", "failed", snapshot_id=NEW, key="fix_cause",
                                     params={"when": "later"}),
                   DestinationResult("usb", "uploaded", snapshot_id=NEW)])
    def said(level: str) -> str:
        key = one_per_level[level]
        return fill("en", f"problem_{key}", sample([f"problem_{key}"]))

    assert [w.message for w in concerns("en", r)] == [
        said("alert"), said("failed"), "drive: failed", "nas: " + TEXTS["en"]["dest_pending"],
        said("incomplete"), said("upkeep")]


def test_the_lead_of_a_failed_run_names_the_most_important_error(tmp_path: Path) -> None:
    cfg = make_config(tmp_path / "src", tmp_path / "backups", check_paths=False,
                      email={"language": "en"})
    r = failed(problem("prune_list_failed"))
    r.errors.append(Problem("database x not found", cause="database_missing"))
    plain = build_report_message(cfg, r, policy.FAILURE, host="srv1") \
        .get_body(("plain",)).get_content()
    assert plain.splitlines()[1] == "What failed: the database to back up cannot be found."


# --- the rules that keep it so ---------------------------------------------------------------


def test_every_key_has_words_in_both_languages_with_the_same_placeholders() -> None:
    wanted = {f"problem_{k}" for k in PROBLEM_KEYS} | {f"dest_hint_{k}" for k in
                                                        DESTINATION_KEYS}
    wanted |= {f"cause_{c}" for c in CAUSES} | {f"cause_{c}_hint" for c in CAUSES}
    for lang in LANGUAGES:
        assert wanted <= TEXTS[lang].keys(), (lang, wanted - TEXTS[lang].keys())
        known = {f"problem_{k}" for k in PROBLEM_KEYS} | {f"problem_{k}_hint" for k in
                                                           PROBLEM_KEYS}
        stale = {k for k in TEXTS[lang] if k.startswith("problem_") and k not in known}
        assert stale == {"problem_untranslated"}, stale
    for key in TEXTS["es"]:
        assert placeholders(TEXTS["es"][key]) == placeholders(TEXTS["en"][key]), key


def _calls(name: str) -> Iterator[tuple[str, ast.Call]]:
    for path in sorted((REPO / "watcher").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else \
                    func.attr if isinstance(func, ast.Attribute) else ""
                if called == name:
                    yield f"{path.relative_to(REPO)}:{node.lineno}", node


def _constants(node: ast.expr | None) -> list[str] | None:
    """The string(s) an expression can be when it is a literal or a choice of literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _constants(node.body), _constants(node.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def _check_params(where: str, call: ast.Call, templates: list[str]) -> None:
    kw = {k.arg: k.value for k in call.keywords}
    needed = set().union(*(placeholders(TEXTS[lang][t]) for lang in LANGUAGES
                           for t in templates if t in TEXTS[lang]))
    params = kw.get("params")
    if params is None:
        assert not needed, f"{where}: params {needed} missing"
    elif isinstance(params, ast.Dict):
        given = {k.value for k in params.keys if isinstance(k, ast.Constant)}
        assert needed <= given, f"{where}: params {needed - given} missing"


def test_every_problem_in_the_code_can_be_told_in_both_languages() -> None:
    found = 0
    for where, call in _calls("Problem"):
        found += 1
        kw = {k.arg: k.value for k in call.keywords}
        assert "key" in kw or "cause" in kw, f"{where}: Problem without key or cause"
        has_hint = len(call.args) > 1 or "hint" in kw
        for key in _constants(kw.get("key")) or []:
            assert key in PROBLEM_KEYS, f"{where}: unknown key {key}"
            _check_params(where, call, [f"problem_{key}", f"problem_{key}_hint"])
            if has_hint and "cause" not in kw:
                assert f"problem_{key}_hint" in TEXTS["es"], f"{where}: no words for the hint"
        for cause in _constants(kw.get("cause")) or []:
            assert cause in CAUSES, f"{where}: unknown cause {cause}"
    assert found >= 20
    for where, call in _calls("DestinationResult"):
        kw = {k.arg: k.value for k in call.keywords}
        if "hint" in kw or "error" in kw:
            assert "key" in kw, f"{where}: a hint or error without a key"
        for key in _constants(kw.get("key")) or []:
            assert key in DESTINATION_KEYS, f"{where}: unknown key {key}"
            _check_params(where, call, [f"dest_hint_{key}"])
    for where, call in _calls("Notice"):          # a destination's notice becomes a Problem
        keys = _constants({k.arg: k.value for k in call.keywords}.get("key"))
        assert keys, f"{where}: a notice without a key"
        for key in keys:
            assert key in PROBLEM_KEYS, f"{where}: unknown key {key}"
            _check_params(where, call, [f"problem_{key}", f"problem_{key}_hint"])
    for where, call in _calls("Canary"):
        kw = {k.arg: k.value for k in call.keywords}
        keys = _constants(kw.get("key"))
        assert keys, f"{where}: a canary without a key"
        for key in keys:
            assert key in PROBLEM_KEYS, f"{where}: unknown key {key}"
            _check_params(where, call, [f"problem_{key}", f"problem_{key}_hint"])
