"""Configuration: every bad input is exit 2 with one line naming file, key and expectation."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO, write_config
from watcher.cli import main
from watcher.config.settings import (
    NUMBER_RANGES,
    SECTIONS,
    ConfigError,
    from_mapping,
    load,
    read_secret,
)
from watcher.config.starter import starter_toml


def bad(raw: dict[str, Any], tmp_path: Path, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "bad.toml"
    with pytest.raises(ConfigError) as info:
        from_mapping(raw, source=path, environ=environ or {})
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def base(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    root = tmp_path / "siip"
    root.mkdir(exist_ok=True)
    raw: dict[str, Any] = {"source": {"root": str(root)}, "local": {"dir": str(tmp_path / "b")}}
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return raw


@pytest.mark.parametrize(("sections", "names"), [
    ({"schedule": {"interval_hour": 24}}, ["schedule.interval_hour", "interval_hours"]),
    ({"sourc": {"root": "/x"}}, ["sourc"]),
    ({"schedule": {"interval_hours": "24"}}, ["schedule.interval_hours", "a number"]),
    ({"schedule": {"interval_hours": -1}}, ["schedule.interval_hours", "one second"]),
    ({"schedule": {"enabled": "yes"}}, ["schedule.enabled", "true or false"]),
    ({"schedule": {"debounce_seconds": 600, "max_delay_seconds": 60}},
     ["schedule.max_delay_seconds", "debounce_seconds"]),
    ({"source": {"databases": "siip.db"}}, ["source.databases", "list of strings"]),
    ({"retention": {"keep_last": 0}}, ["retention.keep_last", "1 to 10000"]),
    ({"compression": {"level": 40}}, ["compression.level", "-7 to 22"]),
    ({"email": {"security": "tls"}}, ["email.security", "'starttls'"]),
    ({"email": {"language": "fr"}}, ["email.language"]),
    ({"email": {"on": ["always"]}}, ["email.on"]),
    ({"email": {"enabled": True}}, ["email.to", "recipient"]),
    ({"drive": {"enabled": True}}, ["drive.folder_id"]),
    ({"drive": {"api_root": "http://example.com/"}}, ["drive.api_root", "127.0.0.1"]),
    ({"log": {"level": "verbose"}}, ["log.level"]),
])
def test_bad_values_name_the_key_and_what_is_expected(tmp_path: Path, sections: dict[str, Any],
                                                      names: list[str]) -> None:
    message = bad(base(tmp_path, **sections), tmp_path)
    for name in names:
        assert name in message, message


# the examples: each passed `config check` and then broke `start`
BROKEN_NUMBERS = [
    ("schedule", "interval_hours", "inf"),
    ("schedule", "interval_hours", "1e-300"),   # ZeroDivisionError in the scheduling job
    ("schedule", "debounce_seconds", "nan"),
    ("schedule", "max_delay_seconds", "inf"),
    ("schedule", "stop_timeout_seconds", "nan"),
    ("email", "timeout_seconds", "nan"),
]


@pytest.mark.parametrize(("section", "key", "value"), BROKEN_NUMBERS)
def test_numbers_that_would_break_start_are_refused_by_config_check(
        tmp_path: Path, siip: Path, capsys: pytest.CaptureFixture[str], section: str, key: str,
        value: str) -> None:
    path = write_config(tmp_path / "c.toml", siip, tmp_path / "b",
                        f"[{section}]\n{key} = {value}\n")
    assert main(["-c", str(path), "config", "check"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert str(path) in line and f"{section}.{key}: expected " in line, line
    assert line.endswith(f"got {float(value)!r}"), line


@pytest.mark.parametrize(("section", "key", "value"), BROKEN_NUMBERS)
def test_numbers_from_the_environment_are_checked_the_same_way(
        tmp_path: Path, section: str, key: str, value: str) -> None:
    var = f"SIIP_WATCHER_{section.upper()}_{key.upper()}"
    message = bad(base(tmp_path), tmp_path, {var: value})
    assert f"{section}.{key}: expected " in message


def numeric_keys() -> list[str]:
    return [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in fields(cls)
            if str(f.type) in ("int", "float")]


def test_every_numeric_key_has_its_own_range() -> None:
    assert sorted(numeric_keys()) == sorted(NUMBER_RANGES)


@pytest.mark.parametrize("dotted", numeric_keys())
def test_each_range_accepts_its_ends_and_refuses_what_lies_beyond(tmp_path: Path,
                                                                  dotted: str) -> None:
    section, key = dotted.split(".")
    rng = NUMBER_RANGES[dotted]
    is_int = next(str(f.type) for f in fields(SECTIONS[section]) if f.name == key) == "int"
    step = 1 if is_int else 1e-9
    # max_delay_seconds may not be below debounce_seconds: keep that rule out of the way
    extra = {"schedule.max_delay_seconds": {"debounce_seconds": 0},
             "schedule.debounce_seconds": {"max_delay_seconds": 604_800}}.get(dotted, {})
    for ok in (rng.low, rng.high):
        value = int(ok) if is_int else ok
        cfg = from_mapping(base(tmp_path, **{section: {key: value, **extra}}),
                           source=tmp_path / "c.toml", environ={})
        assert getattr(getattr(cfg, section), key) == value
    outside = [rng.low - step, rng.high + step]
    if not is_int:
        outside += [math.inf, -math.inf, math.nan]
    for value in outside:
        raw = base(tmp_path, **{section: {key: int(value) if is_int else value, **extra}})
        message = bad(raw, tmp_path)
        assert f"{dotted}: expected {rng.expected}, got" in message


def test_missing_source_root_is_reported(tmp_path: Path) -> None:
    raw = {"source": {"root": str(tmp_path / "nope")}, "local": {"dir": str(tmp_path / "b")}}
    message = bad(raw, tmp_path)
    assert "source.root" in message and "nope" in message


def test_a_literal_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    message = bad(base(tmp_path, email={"password": "hunter2-SECRET"}), tmp_path)
    assert "hunter2" not in message
    assert "password_env" in message and "password_file" in message


def test_environment_overrides_every_section(tmp_path: Path) -> None:
    env = {"SIIP_WATCHER_SCHEDULE_INTERVAL_HOURS": "0.5",
           "SIIP_WATCHER_DRIVE_FOLDER_ID": "abc123",
           "SIIP_WATCHER_EMAIL_TO": "a@x.org, b@x.org",
           "SIIP_WATCHER_SCHEDULE_ONLY_IF_CHANGED": "false",
           "SIIP_WATCHER_NAME": "oficina",
           "SIIP_WATCHER_SMTP_PASSWORD": "not a setting"}
    cfg = from_mapping(base(tmp_path), environ=env)
    assert cfg.schedule.interval_hours == 0.5
    assert cfg.drive.folder_id == "abc123"
    assert cfg.email.to == ["a@x.org", "b@x.org"]
    assert cfg.schedule.only_if_changed is False
    assert cfg.name == "oficina"
    message = bad(base(tmp_path), tmp_path, {"SIIP_WATCHER_SCHEDULE_INTERVAL_HOURS": "daily"})
    assert "SIIP_WATCHER_SCHEDULE_INTERVAL_HOURS" in message


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "siip").mkdir()
    path = tmp_path / "c.toml"
    path.write_text('[source]\nroot = "siip"\n[local]\ndir = "backups"\n')
    cfg = load(path)
    assert cfg.source.root == tmp_path / "siip"
    assert cfg.local.dir == tmp_path / "backups"


def test_starter_file_is_valid_and_is_the_example(tmp_path: Path) -> None:
    parsed = tomllib.loads(starter_toml())
    from_mapping(parsed, check_paths=False, environ={})
    assert (REPO / "config" / "siip-watcher.example.toml").read_text() == starter_toml()


def test_read_secret_from_env_and_file_never_in_messages(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PW", "s3cr3t-value")
    assert read_secret("MY_PW", "", "email") == "s3cr3t-value"
    f = tmp_path / "pw"
    f.write_text("file-secret\n")
    f.chmod(0o600)
    assert read_secret("", str(f), "email") == "file-secret"
    monkeypatch.delenv("MY_PW")
    with pytest.raises(ConfigError) as info:
        read_secret("MY_PW", "", "email")
    assert "MY_PW" in str(info.value)


def test_cli_config_errors_exit_2_in_one_line(tmp_path: Path, siip: Path,
                                              cli: Callable[..., Any]) -> None:
    path = write_config(tmp_path / "c.toml", siip, tmp_path / "b",
                        "[schedule]\ninterval_hours = -3\n")
    proc = cli("-c", str(path), "once")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "schedule.interval_hours" in lines[0] and str(path) in lines[0]

    proc = cli("-c", str(tmp_path / "missing.toml"), "once")
    assert proc.returncode == 2 and "config init" in proc.stderr

    path.write_text(path.read_text().replace("interval_hours = -3", "interval_hours = 1") +
                    '[email]\npassword = "hunter2-SECRET"\n')
    proc = cli("-c", str(path), "config", "check")
    assert proc.returncode == 2 and "hunter2" not in proc.stderr + proc.stdout


def test_config_check_prints_effective_config_redacted(tmp_path: Path, siip: Path,
                                                       cli: Callable[..., Any]) -> None:
    path = write_config(tmp_path / "c.toml", siip, tmp_path / "b",
                        '[heartbeat]\nurl = "https://hc-ping.example/0f8e-secret-uuid"\n')
    proc = cli("-c", str(path), "config", "check",
               env={"SIIP_WATCHER_SMTP_PASSWORD": "pw-SECRET", "SIIP_WATCHER_EMAIL_SMTP_PORT":
                    "465"})
    assert proc.returncode == 0, proc.stderr
    assert "smtp_port = 465" in proc.stdout
    assert "secret-uuid" not in proc.stdout and "pw-SECRET" not in proc.stdout
    assert "the variable is set" in proc.stdout
    tomllib.loads(proc.stdout)  # the output is itself valid TOML


def test_config_init_writes_a_file_that_checks(tmp_path: Path, siip: Path,
                                               cli: Callable[..., Any]) -> None:
    out = tmp_path / "new.toml"
    assert cli("config", "init", "-o", str(out)).returncode == 0
    text = out.read_text().replace('"/srv/siip"', f'"{siip}"').replace(
        '"/var/backups/siip"', f'"{tmp_path / "b"}"')
    out.write_text(text)
    assert cli("-c", str(out), "config", "check").returncode == 0
    assert cli("config", "init", "-o", str(out)).returncode == 2  # never overwrites silently


OLD_CONFIG = '''
import os
BASE_DIR = os.path.abspath(os.path.dirname(__file__))

class Config:
    SECRET_KEY = os.environ.get("SECRET_KEY", "dev")
    SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(BASE_DIR, "siip_database.db")
    BACKUP_ENABLED = True
    BACKUP_INTERVAL_HOURS = 12
    BACKUP_LOCAL_DIR = os.path.join(BASE_DIR, "app", "chat", "temp_backups")
    BACKUP_DRIVE_FOLDER_ID = os.environ.get("BACKUP_DRIVE_FOLDER_ID", "1AbCdEf")
    BACKUP_SMTP_SERVER = "smtp.gmail.com"
    BACKUP_SMTP_PORT = 587
    BACKUP_SMTP_USER = "oficina@gmail.com"
    BACKUP_SMTP_PASSWORD = "abcd efgh ijkl mnop"
    BACKUP_EMAIL_TO = "jefe@oficina.org, admin@oficina.org"
    BACKUP_WEIRD = some_function()

raise SystemExit("this file must never be executed")
'''


def test_config_import_translates_backup_settings_without_running_the_file(
        tmp_path: Path, cli: Callable[..., Any]) -> None:
    old = tmp_path / "app" / "config.py"
    old.parent.mkdir()
    old.write_text(OLD_CONFIG)
    proc = cli("config", "import", str(old))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "abcd efgh" not in out and "BACKUP_SMTP_PASSWORD was NOT copied" in out
    data = tomllib.loads(out)
    assert data["schedule"] == {"enabled": True, "interval_hours": 12.0}
    assert data["local"]["dir"] == str(old.parent / "app" / "chat" / "temp_backups")
    assert data["source"] == {"root": str(old.parent), "databases": ["siip_database.db"]}
    assert data["drive"]["folder_id"] == "1AbCdEf" and data["drive"]["enabled"] is True
    assert data["email"]["to"] == ["jefe@oficina.org", "admin@oficina.org"]
    assert data["email"]["username"] == "oficina@gmail.com"
    assert "BACKUP_WEIRD" in out  # reported, not guessed


SECRET = "Hunter2-S3cret!"


@pytest.mark.parametrize("line", [
    # the example: an `or` the importer cannot evaluate
    f'BACKUP_SMTP_PASSWORD = os.environ.get("X") or "{SECRET}"',
    f'BACKUP_DRIVE_TOKEN = fetch_token("{SECRET}")',
    f'API_KEY = "{SECRET}"\nBACKUP_SMTP_USER = API_KEY[1:]',
    f'MAIL_PASSWORD = "{SECRET}"\nBACKUP_SMTP_PORT = int(MAIL_PASSWORD)',
    # not a secret's name, but the URL in the expression holds one
    f'SQLALCHEMY_DATABASE_URI = os.environ.get("DB") or "postgresql://siip:{SECRET}@db/siip"',
])
def test_config_import_never_prints_any_part_of_a_secret(tmp_path: Path, line: str,
                                                         cli: Callable[..., Any]) -> None:
    old = tmp_path / "config.py"
    old.write_text(f"import os\n{line}\nBACKUP_SMTP_SERVER = 'smtp.gmail.com'\n")
    proc = cli("config", "import", str(old))
    assert proc.returncode == 0, proc.stderr
    assert 'smtp_host = "smtp.gmail.com"' in proc.stdout
    output = proc.stdout + proc.stderr
    pieces = {SECRET[i:i + 5] for i in range(len(SECRET) - 4)}
    assert not [piece for piece in pieces if piece in output], output
    tomllib.loads(proc.stdout)


def test_config_import_explains_the_service_account_instead_of_no_equivalent(
        tmp_path: Path, cli: Callable[..., Any]) -> None:
    old = tmp_path / "config.py"
    old.write_text("BACKUP_DRIVE_SERVICE_ACCOUNT_FILE = '/srv/siip/sa.json'\n"
                   "BACKUP_DRIVE_FOLDER_ID = '1AbCdEf'\n")
    proc = cli("config", "import", str(old))
    assert proc.returncode == 0, proc.stderr
    assert "no equivalent setting" not in proc.stdout
    assert "no storage quota" in proc.stdout
    assert 'auth = "service_account"' in proc.stdout
    assert "/srv/siip/sa.json" in proc.stdout
    tomllib.loads(proc.stdout)
