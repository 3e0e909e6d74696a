"""The destination registry: one table of kinds, and nothing outside watcher/destinations/
that names one."""

from __future__ import annotations

import ast
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO
from watcher.cli import build_parser
from watcher.config.settings import SECTIONS, ConfigError, from_mapping
from watcher.destinations import registry
from watcher.destinations.base import Destination, DestinationError, RemoteFile
from watcher.destinations.registry import KINDS, NAMES, enabled_destinations

#: modules of watcher/destinations/ that the rest of the program may import
PUBLIC = {"watcher.destinations", "watcher.destinations.base", "watcher.destinations.registry"}


def outside_modules() -> list[Path]:
    """Every module that must reach destinations only through the registry."""
    package = REPO / "watcher"
    inside = (package / "destinations", package / "config")
    return [p for p in package.rglob("*.py") if not any(p.is_relative_to(d) for d in inside)]


def test_nothing_outside_destinations_names_a_kind() -> None:
    sections = {k.section for k in KINDS}
    found: list[str] = []
    for path in outside_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        where = path.relative_to(REPO)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                modules = []
            found += [f"{where}: imports {m}" for m in modules
                      if m.startswith("watcher.destinations") and m not in PUBLIC]
            if isinstance(node, ast.Attribute) and node.attr in sections:
                found.append(f"{where}:{node.lineno}: reads the [{node.attr}] section")
    assert found == []


def test_every_kind_has_an_enabled_section_and_a_from_name(tmp_path: Path) -> None:
    assert len(set(NAMES)) == len(KINDS) and "local" not in NAMES
    for kind in KINDS:
        assert "enabled" in {f.name for f in fields(SECTIONS[kind.section])}
    parser = build_parser()
    for command in ("list", "verify", "restore"):
        args = ["restore", "latest", "--to", str(tmp_path)] if command == "restore" else [command]
        for name in ("local", *NAMES):
            assert parser.parse_args([*args, "--from", name]).source == name


def base(tmp_path: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    return {"source": {"root": str(tmp_path)}, "local": {"dir": str(tmp_path / "b")},
            **sections}


def test_a_section_being_set_up_is_not_held_to_enabled_demands(tmp_path: Path) -> None:
    """`drive login` runs before drive.folder_id is known; no environment variable is set."""
    raw = base(tmp_path, drive={"enabled": True, "credentials_file": "c.json",
                                "token_file": "t.json"})
    with pytest.raises(ConfigError, match="drive.folder_id"):
        from_mapping(raw, environ={}, check_paths=False)
    cfg = from_mapping(raw, environ={}, check_paths=False, setting_up=("drive",))
    assert cfg.drive.enabled and cfg.drive.folder_id == ""
    # what is not about being enabled is still checked
    raw["drive"]["api_root"] = "http://example.com/"
    with pytest.raises(ConfigError, match="drive.api_root"):
        from_mapping(raw, environ={}, check_paths=False, setting_up=("drive",))


class Counting(Destination):
    """A destination that holds nothing and counts how often it is closed."""

    name = "counting"

    def __init__(self) -> None:
        self.closed = 0

    def put(self, archive: Path, **kw: Any) -> RemoteFile:
        raise DestinationError("holds nothing")

    def find(self, snapshot_id: str) -> RemoteFile | None:
        return None

    def list(self) -> list[RemoteFile]:
        return []

    def get(self, remote: RemoteFile, target: Path, **kw: Any) -> Path:
        raise DestinationError("holds nothing")

    def delete(self, remote: RemoteFile) -> None:
        pass

    def close(self) -> None:
        self.closed += 1


def test_a_destination_is_closed_by_with_however_the_block_ends() -> None:
    dest = Counting()
    with dest as entered:
        assert entered is dest
    assert dest.closed == 1
    with pytest.raises(DestinationError), dest:
        dest.put(Path("x"), snapshot_id="s", sha256="0" * 64)
    assert dest.closed == 2


def test_a_kind_that_cannot_be_built_is_handed_over_and_the_others_are_built(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cfg: Any, stop: Any) -> Destination:
        raise DestinationError("no such service here")

    first = replace(KINDS[0], build=broken)
    second = replace(KINDS[0], name="second", build=lambda cfg, stop: Counting())
    monkeypatch.setattr(registry, "KINDS", (first, second))
    cfg = from_mapping(base(tmp_path, **{first.section: {"enabled": True}}), environ={},
                       check_paths=False, setting_up=(first.section,))
    failed: list[tuple[str, str]] = []
    built = enabled_destinations(cfg, unavailable=lambda name, exc: failed.append(
        (name, str(exc))))
    assert [d.name for d in built] == ["counting"]
    assert failed == [(first.name, "no such service here")]
    with pytest.raises(DestinationError, match="no such service"):
        enabled_destinations(cfg)
