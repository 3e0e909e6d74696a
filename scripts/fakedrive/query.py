"""Drive's request languages, as much of them as the product speaks: the ``q`` search
(``'X' in parents``, ``trashed =``, ``name``/``mimeType`` ``=``, ``!=``, ``contains``,
``appProperties has { key= and value= }``, joined by ``and``) and ``fields`` selections."""

from __future__ import annotations

import re
from typing import Any

from .errors import ApiFailure
from .state import StoredFile

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<op>!=|=|\{|\})|(?P<word>[A-Za-z_]+))")


def _tokens(q: str) -> list[str]:
    out, pos = [], 0
    while pos < len(q):
        if q[pos:].strip() == "":
            break
        m = _TOKEN.match(q, pos)
        if not m:
            raise ApiFailure(400, "invalid", f"Invalid Value: q near {q[pos:pos + 20]!r}")
        out.append(m.group(m.lastgroup or "word"))
        pos = m.end()
    return out


def _literal(token: str) -> str:
    if not (token.startswith("'") and token.endswith("'")):
        raise ApiFailure(400, "invalid", f"Invalid Value: expected a string, got {token}")
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse_q(q: str) -> list[tuple[str, ...]]:
    """Clauses joined by ``and``; each a tuple the matcher understands."""
    toks = _tokens(q)
    clauses: list[tuple[str, ...]] = []
    i = 0

    def expect(word: str) -> None:
        nonlocal i
        if i >= len(toks) or toks[i] != word:
            raise ApiFailure(400, "invalid", f"Invalid Value: expected {word!r} in q")
        i += 1

    while i < len(toks):
        t = toks[i]
        if t.startswith("'"):
            i += 1
            expect("in")
            expect("parents")
            clauses.append(("parent", _literal(t)))
        elif t == "trashed":
            i += 1
            expect("=")
            value = toks[i]
            i += 1
            clauses.append(("trashed", value))
        elif t in ("name", "mimeType"):
            i += 1
            op = toks[i]
            i += 1
            if op not in ("=", "!=", "contains"):
                raise ApiFailure(400, "invalid", f"Invalid Value: {t} {op}")
            clauses.append((t, op, _literal(toks[i])))
            i += 1
        elif t == "appProperties":
            i += 1
            expect("has")
            expect("{")
            expect("key")
            expect("=")
            key = _literal(toks[i])
            i += 1
            expect("and")
            expect("value")
            expect("=")
            value = _literal(toks[i])
            i += 1
            expect("}")
            clauses.append(("prop", key, value))
        else:
            raise ApiFailure(400, "invalid", f"Invalid Value: unsupported q term {t!r}")
        if i < len(toks):
            expect("and")
    return clauses


# one case per clause of Drive's query language
def matches(f: StoredFile, clauses: list[tuple[str, ...]]) -> bool:  # noqa: PLR0911
    """Whether ``f`` satisfies every clause of a parsed ``q``."""
    for c in clauses:
        if c[0] == "parent" and c[1] not in f.parents:
            return False
        if c[0] == "trashed" and f.trashed != (c[1] == "true"):
            return False
        if c[0] in ("name", "mimeType"):
            value = f.name if c[0] == "name" else f.mime_type
            if c[1] == "=" and value != c[2]:
                return False
            if c[1] == "!=" and value == c[2]:
                return False
            if c[1] == "contains" and c[2] not in value:
                return False
        if c[0] == "prop" and f.app_properties.get(c[1]) != c[2]:
            return False
    return True


def order(found: list[StoredFile], order_by: str) -> list[StoredFile]:
    """``found`` sorted by an ``orderBy`` value (``createdTime``, ``name``; ``desc``)."""
    found = list(found)
    for key in reversed([k.strip() for k in order_by.split(",") if k.strip()]):
        name, _, direction = key.partition(" ")
        attr = {"createdTime": "created", "name": "name"}.get(name)
        if attr is None:
            raise ApiFailure(400, "invalid", f"Invalid Value: orderBy {key}")
        found.sort(key=lambda f, a=attr: getattr(f, a), reverse=direction == "desc")
    return found


def parse_fields(spec: str) -> dict[str, Any] | None:
    """``nextPageToken,files(id,name)`` -> a tree; None means every field."""
    pos = 0

    def level() -> dict[str, Any] | None:
        nonlocal pos
        tree: dict[str, Any] | None = {}
        while pos < len(spec):
            m = re.match(r"\s*([A-Za-z_*][A-Za-z0-9_/]*)\s*", spec[pos:])
            if not m:
                raise ApiFailure(400, "invalidParameter", f"Invalid field selection {spec}")
            name = m.group(1)
            pos += m.end()
            sub: dict[str, Any] | None = {}
            if pos < len(spec) and spec[pos] == "(":
                pos += 1
                sub = level()
                pos += 1  # ')'
            if name == "*":
                tree = None
            elif tree is not None:
                tree[name] = sub
            while pos < len(spec) and spec[pos] == " ":
                pos += 1
            if pos < len(spec) and spec[pos] == ",":
                pos += 1
                continue
            break
        return tree

    return level()


def apply_fields(obj: Any, tree: dict[str, Any] | None) -> Any:
    """``obj`` trimmed to the fields of a :func:`parse_fields` tree."""
    if tree is None or not isinstance(obj, (dict, list)) or tree == {}:
        return obj
    if isinstance(obj, list):
        return [apply_fields(o, tree) for o in obj]
    return {k: apply_fields(obj[k], sub) for k, sub in tree.items() if k in obj}

