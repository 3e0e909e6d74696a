"""The command line as a user runs it: real subprocesses, real files, exit codes, output."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.helpers import write_config
from watcher.jsontext import json_text

Cli = Callable[..., subprocess.CompletedProcess[str]]


def test_once_json_list_verify_restore_round_trip(tmp_path: Path, siip: Path, cli: Cli) -> None:
    config = str(write_config(tmp_path / "c.toml", siip, tmp_path / "b"))
    proc = cli("-c", config, "once", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout is one JSON document and nothing else
    assert report["status"] == "ok" and report["exit_code"] == 0
    snap = report["snapshot"]
    assert snap["databases"][0]["check"] == "ok" and snap["size"] > 0

    listing = cli("-c", config, "list", "--json", check=True).stdout
    listed = json.loads(listing)
    assert [r["id"] for r in listed] == [snap["id"]]
    assert listed[0]["stored_at"] == ["local"]
    # every --json command prints the one text of watcher/jsontext.py, byte for byte
    status = cli("-c", config, "status", "--json", check=True).stdout
    for text in (proc.stdout, listing, status):
        assert text == json_text(json.loads(text))

    verified = cli("-c", config, "verify", "latest", check=True)
    assert f"{snap['id']}: OK" in verified.stdout

    target = tmp_path / "restored"
    restored = cli("-c", config, "restore", snap["id"], "--to", str(target), check=True)
    assert "Restored" in restored.stdout
    assert (target / "SIIP CON FOTO" / "fotografía ñandú.jpg").read_bytes() == \
        (siip / "SIIP CON FOTO" / "fotografía ñandú.jpg").read_bytes()
    assert (target / "siip_database.db").is_file()

    again = cli("-c", config, "restore", "latest", "--to", str(target))
    assert again.returncode == 2 and "--force" in again.stderr
    assert cli("-c", config, "restore", "latest", "--to", str(target), "--force").returncode == 0


def test_restore_only_matching_paths(tmp_path: Path, siip: Path, cli: Cli) -> None:
    config = str(write_config(tmp_path / "c.toml", siip, tmp_path / "b"))
    cli("-c", config, "once", check=True)
    target = tmp_path / "only"
    cli("-c", config, "restore", "latest", "--to", str(target), "--only", "SIIP CON FOTO",
        "--only", "static/uploads/foto 1.jpg", check=True)
    found = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    assert found == ["SIIP CON FOTO/fotografía ñandú.jpg", "static/uploads/foto 1.jpg"]

    db_only = tmp_path / "db"
    cli("-c", config, "restore", "latest", "--to", str(db_only), "--only", "*.db", check=True)
    assert [p.name for p in db_only.iterdir()] == ["siip_database.db"]

    nothing = cli("-c", config, "restore", "latest", "--to", str(tmp_path / "none"),
                  "--only", "no/such/path")
    assert nothing.returncode == 1 and "nothing matched" in nothing.stdout


def test_absolute_database_goes_under_databases(tmp_path: Path, siip: Path, cli: Cli) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(siip / "siip_database.db", other / "otra.db")
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "b")
    config.write_text(config.read_text().replace(
        'databases = ["siip_database.db"]',
        f'databases = ["siip_database.db", "{other / "otra.db"}"]'))
    cli("-c", str(config), "once", check=True)
    target = tmp_path / "r"
    cli("-c", str(config), "restore", "latest", "--to", str(target), check=True)
    assert (target / "siip_database.db").is_file()
    assert (target / "databases" / "otra.db").is_file()


def test_verify_reports_corruption_with_exit_1(tmp_path: Path, siip: Path, cli: Cli) -> None:
    config = str(write_config(tmp_path / "c.toml", siip, tmp_path / "b"))
    cli("-c", config, "once", check=True)
    archive = next((tmp_path / "b").glob("*.tar.zst"))
    data = bytearray(archive.read_bytes())
    data[-100] ^= 0xFF
    archive.write_bytes(bytes(data))
    proc = cli("-c", config, "verify", "--all")
    assert proc.returncode == 1
    assert "FAILED" in proc.stdout
    restore = cli("-c", config, "restore", "latest", "--to", str(tmp_path / "r"))
    assert restore.returncode == 1 and "sha256" in restore.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_lost_catalog_is_rebuilt_from_the_archives(tmp_path: Path, siip: Path, cli: Cli) -> None:
    config = str(write_config(tmp_path / "c.toml", siip, tmp_path / "b"))
    first = json.loads(cli("-c", config, "once", "--json", check=True).stdout)
    (tmp_path / "b" / "catalog.sqlite3").unlink()
    listed = json.loads(cli("-c", config, "list", "--json", check=True).stdout)
    assert [r["id"] for r in listed] == [first["snapshot"]["id"]]
    assert listed[0]["files"] == first["snapshot"]["files"]
    assert listed[0]["sha256"] == first["snapshot"]["sha256"]


def test_prune_dry_run_then_prune(tmp_path: Path, siip: Path, cli: Cli) -> None:
    # full archives only: a kept delta keeping its base is tests/test_delta.py's
    config = write_config(tmp_path / "c.toml", siip, tmp_path / "b",
                          "[retention]\nkeep_last = 5\n[snapshot]\nfull_every_days = 0\n")
    ids = [json.loads(cli("-c", str(config), "once", "--json", check=True).stdout)
           ["snapshot"]["id"] for _ in range(3)]
    assert len(set(ids)) == 3
    config.write_text(config.read_text().replace(
        "keep_last = 5", "keep_last = 1\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0"))
    dry = cli("-c", str(config), "prune", "--dry-run", check=True)
    assert "would delete 2" in dry.stdout
    assert len(list((tmp_path / "b").glob("*.tar.zst"))) == 3
    cli("-c", str(config), "prune", check=True)
    left = sorted(p.name for p in (tmp_path / "b").glob("*.tar.zst*"))
    assert left == [f"{ids[-1]}.tar.zst", f"{ids[-1]}.tar.zst.sha256"]
    listed = json.loads(cli("-c", str(config), "list", "--json", check=True).stdout)
    assert [r["id"] for r in listed] == [ids[-1]]


def test_console_script_is_the_same_program(tmp_path: Path) -> None:
    exe = shutil.which("siip-watcher") or str(Path(__import__("sys").executable).parent /
                                               "siip-watcher")
    a = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    b = subprocess.run([__import__("sys").executable, "-m", "watcher", "--help"],
                       capture_output=True, text=True, check=False)
    assert a.returncode == b.returncode == 0
    assert a.stdout.replace("siip-watcher", "X") == b.stdout.replace("siip-watcher", "X")


def test_demo_runs_with_nothing_configured(tmp_path: Path, cli: Cli) -> None:
    proc = cli("demo", "--dir", str(tmp_path / "demo"), check=True)
    assert "Archive" in proc.stdout and "restore latest --to" in proc.stdout
    archives = list((tmp_path / "demo" / "backups").glob("*.tar.zst"))
    assert len(archives) == 1
    config = str(tmp_path / "demo" / "siip-watcher.toml")
    assert cli("-c", config, "verify", "latest").returncode == 0


def test_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    result: Any = cli("restore")
    assert result.returncode == 2
    assert cli("frobnicate").returncode == 2


def test_list_verify_prune_work_when_the_source_is_gone(tmp_path: Path, siip: Path,
                                                       cli: Cli) -> None:
    config = str(write_config(tmp_path / "c.toml", siip, tmp_path / "b"))
    cli("-c", config, "once", check=True)
    shutil.rmtree(siip)  # the disaster: the server's project folder is lost
    assert "siip-" in cli("-c", config, "list", check=True).stdout
    assert "OK" in cli("-c", config, "verify", "latest", check=True).stdout
    cli("-c", config, "prune", "--dry-run", check=True)
    cli("-c", config, "restore", "latest", "--to", str(siip), check=True)
    assert (siip / "siip_database.db").is_file()


def test_the_json_text_keeps_its_bytes() -> None:
    # what scripts and /api/status readers parse: two-space indent, UTF-8 as is (not \u
    # escapes), a datetime or a path as its str, one newline at the end
    data = {"fotografía": "ñandú", "at": datetime(2026, 11, 28, 14, 0, tzinfo=UTC),
            "file": Path("/b/siip.tar.zst"), "items": [1, None, True]}
    assert json_text(data) == (
        '{\n  "fotografía": "ñandú",\n  "at": "2026-11-28 14:00:00+00:00",\n'
        '  "file": "/b/siip.tar.zst",\n  "items": [\n    1,\n    null,\n    true\n  ]\n}\n')
