"""Translate the old in-app routine's ``config.py`` (``BACKUP_*`` settings) into TOML.

The file is parsed, never executed: a tiny evaluator understands literals, string
concatenation, ``os.path.join/dirname/abspath``, ``__file__``, names assigned earlier in the
file, and ``os.environ.get``/``os.getenv`` defaults. Anything else is reported, not guessed,
and reported by its kind, never by quoting it: the source of an expression can hold a
literal password. A setting whose name looks like a secret is never evaluated, let alone
printed; a password setting gets a note on where it goes now.
"""

from __future__ import annotations

import ast
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watcher.config.settings import ConfigError, toml_value

#: old name -> (section, key)
MAPPING: dict[str, tuple[str, str]] = {
    "BACKUP_ENABLED": ("schedule", "enabled"),
    "BACKUP_INTERVAL_HOURS": ("schedule", "interval_hours"),
    "BACKUP_LOCAL_DIR": ("local", "dir"),
    "BACKUP_DRIVE_FOLDER_ID": ("drive", "folder_id"),
    "BACKUP_SMTP_SERVER": ("email", "smtp_host"),
    "BACKUP_SMTP_PORT": ("email", "smtp_port"),
    "BACKUP_SMTP_USER": ("email", "username"),
    "BACKUP_EMAIL_TO": ("email", "to"),
    "BACKUP_EMAIL_FROM": ("email", "sender"),
}
SECRET_NAMES = ("BACKUP_SMTP_PASSWORD", "BACKUP_EMAIL_PASSWORD", "MAIL_PASSWORD")
#: a name holding one of these (in any case) is a secret: password, passwd, pwd, token,
#: secret, key, api key, credential, auth, private, salt
SECRET_WORDS = ("PASS", "PWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL", "AUTH", "PRIVATE",
                "SALT")
#: the old routine's service-account key file: there is an equivalent, but not the default
SERVICE_ACCOUNT_NAMES = ("BACKUP_DRIVE_SERVICE_ACCOUNT_FILE", "BACKUP_SERVICE_ACCOUNT_FILE",
                         "BACKUP_DRIVE_CREDENTIALS_FILE")
DATABASE_NAMES = ("SQLALCHEMY_DATABASE_URI", "DATABASE_URI", "DATABASE", "BACKUP_DB_PATH")


class _Unknown(Exception):
    pass


class _Evaluator:
    def __init__(self, file: Path) -> None:
        self.names: dict[str, Any] = {"__file__": str(file)}
        self.env_notes: dict[str, str] = {}

    # one branch per expression form the importer understands
    def eval(self, node: ast.AST) -> Any:  # noqa: PLR0911,PLR0912
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [self.eval(e) for e in node.elts]
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            raise _Unknown(node.id)  # a secret's name lands here too: it is never stored
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.eval(node.left) + self.eval(node.right)
        if isinstance(node, ast.JoinedStr):
            return "".join(str(self.eval(v.value if isinstance(v, ast.FormattedValue) else v))
                           for v in node.values)
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            args = node.args
            if func in ("os.path.join", "path.join"):
                return os.path.join(*[self.eval(a) for a in args])
            if func in ("os.path.dirname", "path.dirname"):
                return os.path.dirname(self.eval(args[0]))
            if func in ("os.path.abspath", "os.path.realpath", "path.abspath"):
                return os.path.abspath(self.eval(args[0]))
            if func in ("str", "int", "float", "bool") and len(args) == 1:
                return {"str": str, "int": int, "float": float, "bool": bool}[func](
                    self.eval(args[0]))
            if func in ("os.environ.get", "os.getenv", "environ.get") and args:
                var = self.eval(args[0])
                default = self.eval(args[1]) if len(args) > 1 else None
                self.env_notes[str(var)] = func
                if default is None:
                    raise _Unknown(f"environment variable {var}")
                return default
        raise _Unknown(describe(node))


def looks_secret(name: str) -> bool:
    """True for a setting whose value must never be shown (``MAIL_PASSWORD``, ``API_KEY`` ...)."""
    upper = name.upper()
    return any(word in upper for word in SECRET_WORDS)


def describe(node: ast.AST) -> str:
    """What kind of expression ``node`` is, in words that quote none of its literals."""
    if isinstance(node, ast.Call):
        func = _dotted(node.func)
        return f"a call to {func}()" if func else "a call"
    if isinstance(node, ast.BoolOp):
        return f"an `{'or' if isinstance(node.op, ast.Or) else 'and'}` expression"
    if isinstance(node, ast.IfExp):
        return "a conditional expression"
    if isinstance(node, ast.Attribute):
        dotted = _dotted(node)
        return f"the attribute {dotted}" if dotted else "an attribute"
    if isinstance(node, ast.Subscript):
        return "a subscript"
    return f"an expression of a kind it does not read ({type(node).__name__})"


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of plain names, else None (which may hide a literal)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def import_old_config(path: Path) -> str:
    """TOML text equivalent to the ``BACKUP_*`` settings of the old ``config.py``."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    except SyntaxError as exc:
        raise ConfigError(f"{path}: not valid Python (line {exc.lineno}); fix it or copy the "
                          f"values by hand into `siip-watcher config init` output") from None
    ev = _Evaluator(path.resolve())
    found = _Found()
    _read_settings(tree, ev, found)
    sections, notes = _sections(found.values, ev, path)
    return _render(path, sections, notes, found, ev.env_notes)


@dataclass
class _Found:
    """What the old file's assignments gave, in file order."""

    #: MAPPING and DATABASE_NAMES settings -> their values
    values: dict[str, Any] = field(default_factory=dict)
    #: one line per setting left out, saying why
    untranslated: list[str] = field(default_factory=list)
    #: the names of secret settings (never their values)
    secrets: list[str] = field(default_factory=list)


def _read_settings(tree: ast.Module, ev: _Evaluator, found: _Found) -> None:
    """Evaluate each assignment the importer may read, into ``found`` and ``ev.names``."""
    for target, value in _assignments(tree):
        if looks_secret(target):
            # never evaluated: a failure would describe the expression, and a success would
            # keep the value where a later expression could print it; only the name is shown
            if (target in SECRET_NAMES or target.startswith("BACKUP_")) and \
                    target not in found.secrets:
                found.secrets.append(target)
            continue
        try:
            result = ev.eval(value)
        except _Unknown as exc:
            if target.startswith("BACKUP_") or target in DATABASE_NAMES:
                found.untranslated.append(f"{target}: could not work out its value ({exc})")
            continue
        except (TypeError, ValueError, IndexError) as exc:
            # the exception's text may quote the value (int('...')), so only its kind is shown
            if target.startswith("BACKUP_") or target in DATABASE_NAMES:
                found.untranslated.append(f"{target}: could not work out its value "
                                          f"({describe(value)} failed with "
                                          f"{type(exc).__name__})")
            continue
        ev.names[target] = result
        if target in MAPPING or target in DATABASE_NAMES:
            found.values[target] = result
        elif target in SERVICE_ACCOUNT_NAMES:
            found.untranslated.append(
                f"{target}: left out on purpose: a service account has no storage quota "
                f"outside a shared drive, so uploads to a normal Drive fail; this file uses "
                f"`siip-watcher drive login` (OAuth) instead. To keep the service account (a "
                f"shared drive only), set [drive] auth = \"service_account\" and "
                f"credentials_file = {toml_value(str(result))}")
        elif target.startswith("BACKUP_"):
            found.untranslated.append(f"{target}: no equivalent setting")


def _sections(found: dict[str, Any], ev: _Evaluator,
              path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The new file's sections from the settings found, and a note on where each came from."""
    notes: list[str] = []
    sections: dict[str, dict[str, Any]] = {}
    for old, value in found.items():
        if old in DATABASE_NAMES:
            continue
        section, key = MAPPING[old]
        sections.setdefault(section, {})[key] = _as_new_value(key, value)
        notes.append(f"{section}.{key} <- {old}")

    root = Path(ev.names.get("BASE_DIR", path.resolve().parent))
    source: dict[str, Any] = {"root": str(root)}
    for old in DATABASE_NAMES:
        if old in found and isinstance(found[old], str):
            db = found[old].removeprefix("sqlite:///")
            if db.startswith("/") or os.path.isabs(db):
                with contextlib.suppress(ValueError):
                    db = str(Path(db).relative_to(root))
            source["databases"] = [db]
            notes.append(f"source.databases <- {old}")
            break
    sections = {"source": source, **sections}
    if "drive" in sections and sections["drive"].get("folder_id"):
        sections["drive"] = {"enabled": True, **sections["drive"],
                             "auth": "oauth", "credentials_file": "", "token_file": ""}
        notes.append("drive: set credentials_file and token_file, then run "
                     "`siip-watcher drive login`")
    if "email" in sections:
        sections["email"] = {"enabled": True, **sections["email"]}
        if "username" in sections["email"] and "sender" not in sections["email"]:
            sections["email"]["sender"] = sections["email"]["username"]
    return sections, notes


def _as_new_value(key: str, value: Any) -> Any:
    """An old setting's value in the type its new key takes: the recipients as a list (the
    old routine took them comma- or semicolon-separated), the interval as a float."""
    if key == "to" and isinstance(value, str):
        return [v.strip() for v in value.replace(";", ",").split(",") if v.strip()]
    if key == "interval_hours" and isinstance(value, int | float):
        return float(value)
    return value


def _render(path: Path, sections: dict[str, dict[str, Any]], notes: list[str], found: _Found,
            env_notes: dict[str, str]) -> str:
    """The TOML text: what was translated and what was not, as comments, then the sections."""
    out = [f"# Translated from {path} by `siip-watcher config import`.",
           "# Review it, then check it with `siip-watcher -c FILE config check`."]
    out += [f"#   {n}" for n in notes]
    for name in found.secrets:
        out.append(f"# {name} was NOT copied: secrets never sit in this file. An SMTP password "
                   f"goes in the environment variable SIIP_WATCHER_SMTP_PASSWORD (systemd: "
                   f"EnvironmentFile= or LoadCredential=) or in a 0600 file named by "
                   f"email.password_file.")
    for var in env_notes:
        out.append(f"# the old file read the environment variable {var}; its default was used")
    for line in found.untranslated:
        out.append(f"# not translated: {line}")
    out.append('\nname = "siip"')
    for section, values in sections.items():
        out.append(f"\n[{section}]")
        for key, value in values.items():
            out.append(f"{key} = {toml_value(value)}")
    return "\n".join(out) + "\n"


def _assignments(tree: ast.Module) -> list[tuple[str, ast.AST]]:
    """Top-level and class-level ``NAME = value`` assignments, in file order.

    Flask configs are often classes (``class Config: BACKUP_... = ...``).
    """
    result: list[tuple[str, ast.AST]] = []

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and \
                    isinstance(stmt.targets[0], ast.Name):
                result.append((stmt.targets[0].id, stmt.value))
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and \
                    stmt.value is not None:
                result.append((stmt.target.id, stmt.value))
            elif isinstance(stmt, ast.ClassDef):
                visit(stmt.body)

    visit(tree.body)
    return result
