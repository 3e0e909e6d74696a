"""A failed run says in plain words, in the report's language, what failed; the technical
line (English, for the admin) stays in the errors section."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.helpers import make_config
from watcher.backup.report import CAUSES
from watcher.backup.run import run_backup
from watcher.notify.message import build_report_message
from watcher.notify.texts import LANGUAGES, TEXTS


def test_every_cause_has_words_in_every_language() -> None:
    for lang in LANGUAGES:
        for cause in CAUSES:
            assert TEXTS[lang][f"cause_{cause}"].strip(), (lang, cause)


def test_missing_database_mail_says_it_in_spanish_first(siip: Path, tmp_path: Path) -> None:
    cfg = make_config(siip, tmp_path / "backups", source={"databases": ["no_existe.db"]},
                      email={"sender": "copias@oficina.org", "to": ["jefe@oficina.org"]})
    report = run_backup(cfg, trigger="interval", email=False)
    assert report.errors[0].cause == "database_missing"
    body = build_report_message(cfg, report, "failure").get_body(("plain",)).get_content()
    lines = body.splitlines()
    assert lines[0].startswith('La copia de seguridad de "siip" FALLÓ')
    assert lines[1] == "Qué falló: no se encuentra la base de datos que hay que copiar."
    assert "no_existe.db not found" in body  # the technical line, for the admin

    english = dataclasses.replace(cfg, email=dataclasses.replace(cfg.email, language="en"))
    body = build_report_message(english, report, "failure").get_body(("plain",)).get_content()
    assert "What failed: the database to back up cannot be found." in body


def test_damaged_database_has_its_own_cause(siip: Path, tmp_path: Path) -> None:
    (siip / "roto.db").write_bytes(b"SQLite format 3\0" + b"\x07" * 8192)
    cfg = make_config(siip, tmp_path / "backups", source={"databases": ["roto.db"]})
    report = run_backup(cfg, trigger="manual", email=False)
    assert report.errors[0].cause == "database_damaged", report.errors[0].message
