#!/usr/bin/env python3
"""Benchmark ``siip-watcher once`` against ``tar | zstd`` and the old in-app backup routine.

Issue 2, section Performance. The script

1. generates (once, cached under ``--data``) a SIIP-like dataset per scale, deterministic from
   ``--seed``: a WAL-mode SQLite database of about 300 MB with a non-empty ``-wal``, about 15,000
   files in about 800 folders (about 1 GB of incompressible "photos", 0.25 GB of code, templates,
   JSON, CSV and logs), junk that every contender excludes, and a matching ``siip-watcher.toml``;
2. reads the tree once so that every contender runs on a warm page cache, then times, side by
   side and interleaved, ``--repeat`` runs of each contender: wall time (median), CPU time, peak
   RSS (from ``wait4``; for the pipe, the larger of tar and zstd) and output size. Contenders:
   ``once`` (the real command), ``full`` (the same command with the full ``PRAGMA
   integrity_check`` in place of ``quick_check`` on the database copy, to show what the full
   check would cost), ``tar``
   (``tar | zstd -T0 -3``) and ``old`` (the old routine); on request also ``nodiscover``
   (``once`` with ``source.discover_databases = false``, to show what looking for databases
   nobody listed costs), ``sniffall`` (``once`` reading the first bytes of every file for
   the SQLite header, not only those named like a database: the rule it does not use) and
   ``base`` (``once`` of the checkout ``--baseline`` names, for before and after in one run);
3. prints a table with the issue's ratios and targets, or one JSON document with ``--json``.

``--stat-pass`` times instead, in one process, only the stat pass that starts every snapshot
(``watcher.snapshot.tree.summarize``: what the tree holds, its size, its fingerprint), once
per rule for finding databases nobody listed: off, the candidates the walk uses, every file.
Each rule runs warm and again with the dataset's file contents dropped from the page cache
(``posix_fadvise(DONTNEED)`` on its own files only; metadata stays cached), as after a reboot.

Every scale's ``×N`` multiplies the file count and the bytes, the database included.

Examples::

    .venv/bin/python scripts/bench_snapshot.py --generate-only
    .venv/bin/python scripts/bench_snapshot.py --scale 1 --scale 4
    .venv/bin/python scripts/bench_snapshot.py --contenders tar,old --repeat 1 --json

While the benchmark runs, a helper process holds the database open the way the web app does, so
no contender's closing connection checkpoints the ``-wal`` away and every repeat sees the same
files. The script needs only the standard library; ``siip-watcher`` itself comes from the
repository's ``.venv`` (or ``--watcher``).
"""

from __future__ import annotations

import argparse
import compileall
import fnmatch
import json
import math
import os
import platform
import random
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: bump when the generator changes, so cached datasets are rebuilt instead of silently reused
GENERATOR_VERSION = 2
STAMP = ".bench-snapshot"          # marks a folder this script created (and may delete)
MARKER = "dataset.json"            # written last: a dataset without it is incomplete

MB = 1_000_000


@dataclass(frozen=True)
class Mix:
    """What one 1x dataset holds; ``--scale N`` multiplies every count and size."""

    name: str
    photo_bytes: int               # incompressible photos, lognormal sizes 20 KB..2 MB
    photo_median: int              # their median size
    text_bytes: int                # code, templates, JSON, CSV, logs, letters
    text_share: float              # their count, as a share of the photo-heavy mix's 12,900
    db_bytes: int                  # the database file
    wal_bytes: int                 # recent commits still in the -wal when the backup starts
    db_blobs: bool                 # rows carry random attachments (incompressible) besides text


#: issue 2's SIIP-like tree: ~300 MB database, ~15,000 files in ~800 folders, ~1.25 GB of
#: which ~1 GB is incompressible photos
PHOTOS = Mix("photos", photo_bytes=1_000 * MB, photo_median=350_000, text_bytes=250 * MB,
             text_share=1.0, db_bytes=300 * MB, wal_bytes=8 * MB, db_blobs=False)
#: issue 9's tree where small files dominate: ~10,000 code files and ~1,800 photos in ~360 MB,
#: plus a 117 MB database whose rows carry small random attachments
SMALLFILES = Mix("smallfiles", photo_bytes=260 * MB, photo_median=105_000,
                 text_bytes=100 * MB, text_share=0.775, db_bytes=113 * MB, wal_bytes=4 * MB,
                 db_blobs=True)
MIXES = {m.name: m for m in (PHOTOS, SMALLFILES)}
DB_NAME = "siip_database.db"
OLD_BACKUP_DIR = "app/chat/temp_backups"   # where the old routine kept its zips, in the tree
# odds that shape the generated tree and database (changing one changes every dataset)
PHOTOS_OF_PERSONS = 0.93           # the share of photos filed by person, not by case
TEXT_NAMED_AFTER_PERSONS = 0.15    # json and txt files named like "<person> oficio 12"
MESSAGE_PER_PERSON = 0.5           # the chance that a person has a chat message

#: gitignore-syntax excludes written to the config; tar and the old way get the same list
EXCLUDES = ["__pycache__/", "*.pyc", ".git/", "venv/", ".venv/", OLD_BACKUP_DIR + "/"]

CONTENDERS = ("once", "full", "tar", "old", "nodiscover", "sniffall", "base")
#: --working-day's contenders (scripts/bench_workday.py), in their default order
WORKING_DAY_CONTENDERS = ("delta", "restic", "borg", "full")
#: what runs without --contenders
DEFAULT_CONTENDERS = ("once", "full", "tar", "old")
TARGETS = {
    "once_over_tar_wall_max": 1.3,
    "old_over_once_wall_min": 6.0,
    "size_once_over_tar_within": 0.05,
    "peak_rss_once_mb_max": 200.0,
}

# --- vocabulary (Spanish, with accents, as SIIP's data is) -------------------------------------

NOMBRES = [
    "José", "María", "Juan", "Guadalupe", "Francisco", "Ana", "Jesús", "Sofía", "Ramón", "Inés",
    "Raúl", "Lucía", "Andrés", "Mónica", "Martín", "Verónica", "Héctor", "Ángel", "Begoña",
    "Íñigo", "Nuria", "Óscar", "Joaquín", "Ximena", "Rubén", "Dolores", "Tomás", "Belén", "Adrián",
    "Maité", "Rocío", "Efraín", "Azucena", "Noé", "Citlali", "Arturo", "Leticia", "Érika", "Saúl",
]
APELLIDOS = [
    "García", "Hernández", "Martínez", "López", "González", "Pérez", "Rodríguez", "Sánchez",
    "Ramírez", "Cruz", "Flores", "Gómez", "Morales", "Vázquez", "Jiménez", "Reyes", "Díaz",
    "Torres", "Gutiérrez", "Ruiz", "Mendoza", "Aguilar", "Ortiz", "Núñez", "Muñoz", "Peña",
    "Ibáñez", "Castañeda", "Ordóñez", "Méndez", "Chávez", "Domínguez", "Álvarez", "Cortés",
]
MUNICIPIOS = [
    "Oaxaca de Juárez", "San Cristóbal de las Casas", "Mérida", "Querétaro", "León",
    "Tuxtla Gutiérrez", "Pátzcuaro", "Zacatecas", "Córdoba", "Xalapa", "Cuernavaca", "Tlaxcala",
    "Campeche", "Mazatlán", "Morelia", "Tehuacán", "Juchitán de Zaragoza", "Apizaco",
]
CALLES = [
    "Av. Juárez", "Calle Hidalgo", "Calle Morelos", "Av. Reforma", "Calle 5 de Mayo",
    "Calle Niños Héroes", "Privada Allende", "Callejón del Beso", "Av. Revolución",
    "Calle Emiliano Zapata", "Andador Guerrero", "Calzada de la Almería", "Cerrada Ñandú",
]
_WORDS = (
    "el la los las un una de del en con por para sin sobre entre hasta desde según durante "
    "persona expediente solicitud trámite oficio número fecha nombre domicilio teléfono correo "
    "fotografía credencial comprobante acta nacimiento matrimonio defunción constancia registro "
    "revisión aprobación rechazo pendiente atendido turnado archivado observación dirección área "
    "coordinación municipio estado región sede oficina ventanilla módulo usuario administrador "
    "captura actualización baja alta consulta reporte estadística mensual anual informe resumen "
    "se realizó la entrega del documento al interesado quien firmó de conformidad y recibió copia "
    "sello acuse notificación plazo días hábiles vigencia periodo ejercicio fiscal presupuesto "
    "pago recibo factura importe total subtotal descuento saldo adeudo cobranza cajero caja "
    "información pública transparencia protección datos personales aviso privacidad consentimiento "
    "año mañana señor señora niño niña compañía diseño enseñanza pequeño dueño montaña otoño"
)
PALABRAS = _WORDS.split()
MODULOS = [
    "personas", "expedientes", "chat", "reportes", "usuarios", "catalogos", "auth", "api",
    "utilidades", "servicios", "modelos", "admin", "notificaciones", "documentos", "pagos",
    "agenda", "inventario", "estadisticas", "tramites", "firmas",
]
SUBMODULOS = ["", "vistas", "servicios", "modelos", "formularios", "utilidades", "tests"]
MESES = [
    "01 enero", "02 febrero", "03 marzo", "04 abril", "05 mayo", "06 junio", "07 julio",
    "08 agosto", "09 septiembre", "10 octubre", "11 noviembre", "12 diciembre",
]
SEDES = ["Centro", "Norte", "Sur", "Peñasco", "Bahía", "Montaña", "Río Bravo", "Valle"]
FOTO_NOMBRES = [
    "fotografía", "foto", "credencial frente", "credencial reverso", "comprobante de domicilio",
    "acta de nacimiento", "firma", "huella", "fotografía ñandú",
]


# --- the plan: pure, deterministic from (seed, scale) ---------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One thing to create in the tree."""

    rel: str               # POSIX path relative to the root
    kind: str              # photo, py, html, js, css, json, csv, txt, log, pyc, gitobj, blob, link
    size: int = 0
    seed: int = 0
    target: str = ""       # symlinks only

    @property
    def junk(self) -> bool:
        """True for what every contender must leave out (the excludes)."""
        return is_excluded(self.rel, EXCLUDES)


def is_excluded(rel: str, patterns: Sequence[str]) -> bool:
    """gitignore semantics for the simple patterns this benchmark uses.

    A pattern without an inner slash matches any path component (``venv/``, ``*.pyc``); one with
    an inner slash is anchored at the root (``app/chat/temp_backups/``). A trailing slash means
    "a folder": here every such pattern's match has something below it, so any component before
    the last one counts as a folder.
    """
    parts = PurePosixPath(rel).parts
    for pattern in patterns:
        folder_only = pattern.endswith("/")
        pat = pattern.strip("/")
        if "/" in pat:
            depth = len(PurePosixPath(pat).parts)
            if len(parts) >= depth and fnmatch.fnmatchcase("/".join(parts[:depth]), pat) and (
                not folder_only or len(parts) > depth
            ):
                return True
            continue
        candidates = parts[:-1] if folder_only else parts
        if any(fnmatch.fnmatchcase(part, pat) for part in candidates):
            return True
    return False


def _lognormal_size(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))


def _persona(rng: random.Random) -> str:
    return f"{rng.choice(APELLIDOS)} {rng.choice(APELLIDOS)} {rng.choice(NOMBRES)}"


# the dataset's recipe, one kind of entry after the other, as the module docstring lists them
def plan_tree(seed: int, scale: int, mix: Mix = PHOTOS) -> list[Entry]:  # noqa: PLR0912
    """Every file, link and junk entry of the dataset; the same (seed, scale, mix), the same
    plan (the photo-heavy mix's plans are those of the generator before mixes existed)."""
    rng = random.Random(_seed_text("tree", seed, scale, mix))
    entries: list[Entry] = []

    def add(rel: str, kind: str, size: int) -> None:
        entries.append(Entry(rel, kind, size, rng.getrandbits(63)))

    # folders by role: code (~130), persona photo folders (~450), documents by month (~120),
    # case files (~100), monthly reports (~12): about 800 folders per 1x
    code_dirs: list[str] = []
    for copy in range(scale):
        suffix = "" if copy == 0 else f"_{copy + 1}"
        for mod in MODULOS:
            for sub in SUBMODULOS:
                code_dirs.append(f"app/{mod}{suffix}" + (f"/{sub}" if sub else ""))
    static_dirs = [f"app/static/{kind}" for kind in ("js", "css", "img")]
    template_dirs = [f"app/templates/{mod}" for mod in MODULOS]
    persona_dirs = [
        f"uploads/SIIP CON FOTO/{_persona(rng)} {n:05d}" for n in range(400 * scale)
    ]
    doc_dirs = [
        f"uploads/documentos/Sede {SEDES[s % len(SEDES)]}/Año {2015 + y}/{mes}"
        for s in range(scale) for y in range(10) for mes in MESES
    ]
    case_dirs = [f"expedientes/EXP-{2016 + n % 9}-{n:05d}" for n in range(100 * scale)]
    report_dirs = [f"exportaciones/reportes/{2024 + m // 12}-{m % 12 + 1:02d}"
                   for m in range(12 * scale)]

    # photos: lognormal sizes 20 KB..2 MB around the mix's median until its budget is spent
    photo_budget = mix.photo_bytes * scale
    counts: dict[str, int] = {}
    while photo_budget > 0:
        size = min(photo_budget, _lognormal_size(rng, mix.photo_median, 0.8, 20_000, 2_000_000))
        # the dataset mix
        by_person = rng.random() < PHOTOS_OF_PERSONS
        folder = rng.choice(persona_dirs if by_person else case_dirs)
        n = counts[folder] = counts.get(folder, 0) + 1
        add(f"{folder}/{rng.choice(FOTO_NOMBRES)} {n:03d}.jpg", "photo", size)
        photo_budget -= size

    # text: counts per kind, lognormal sizes, then scaled so the total is the text budget
    text: list[tuple[str, str, float]] = []
    mixes: list[tuple[list[str], int, list[tuple[str, str, float, float]]]] = [
        # (folders, files per 1x, [(kind, extension, median bytes, sigma)])
        (code_dirs, 3_300, [("py", ".py", 5_000, 0.9)]),
        (template_dirs, 900, [("html", ".html", 6_000, 0.7)]),
        (static_dirs, 300, [("js", ".js", 9_000, 1.0), ("css", ".css", 5_000, 0.8)]),
        (doc_dirs, 4_300, [("json", ".json", 7_000, 1.0), ("txt", ".txt", 4_000, 0.8),
                           ("html", ".html", 9_000, 0.7)]),
        (case_dirs, 3_400, [("json", ".json", 8_000, 0.9), ("txt", ".txt", 3_000, 0.9)]),
        (report_dirs, 660, [("csv", ".csv", 120_000, 1.1)]),
        (["logs"], 40, [("log", ".log", 1_500_000, 0.6)]),
    ]
    for folders, per_1x, kinds in mixes:
        for i in range(round(per_1x * mix.text_share) * scale):
            kind, ext, median, sigma = rng.choice(kinds)
            folder = rng.choice(folders)
            stem = f"{rng.choice(PALABRAS)}_{rng.choice(PALABRAS)}_{i:05d}"
            if kind in ("json", "txt") and rng.random() < TEXT_NAMED_AFTER_PERSONS:
                stem = f"{_persona(rng)} {rng.choice(['oficio', 'solicitud', 'acuse'])} {i}"
            size = _lognormal_size(rng, median, sigma, 200, 8_000_000)
            text.append((f"{folder}/{stem}{ext}", kind, size))
    factor = mix.text_bytes * scale / sum(size for _, _, size in text)
    for rel, kind, size in text:
        add(rel, kind, max(1, round(size * factor)))

    # an empty file and a relative symlink, as real trees have
    add("uploads/SIIP CON FOTO/.gitkeep", "txt", 0)
    add("app/static/img/logo institucional.jpg", "photo", 48_000)
    entries.append(Entry("app/static/img/logo.jpg", "link", target="logo institucional.jpg"))
    add("README.md", "txt", 3_000)
    add("requirements.txt", "txt", 600)
    add("app.py", "py", 4_000)
    add("config.py", "py", 2_500)

    # junk every contender excludes: bytecode beside the code, a git repository, a virtualenv,
    # and the old routine's backups inside the tree
    for rel, kind, size in text:
        if kind == "py":
            folder, name = rel.rsplit("/", 1)
            add(f"{folder}/__pycache__/{name[:-3]}.cpython-311.pyc", "pyc", int(size * 1.3))
    for _ in range(1_200 * scale):
        h = f"{rng.getrandbits(160):040x}"
        size = _lognormal_size(rng, 3_000, 1.2, 60, 500_000)
        add(f".git/objects/{h[:2]}/{h[2:]}", "gitobj", size)
    for i in range(1_500 * scale):
        pkg = f"{rng.choice(['flask', 'jinja2', 'werkzeug', 'sqlalchemy', 'pillow'])}{i % 40}"
        add(f"venv/lib/python3.11/site-packages/{pkg}/mod_{i:05d}.py", "py",
            _lognormal_size(rng, 6_000, 1.0, 100, 300_000))
    for d in range(2):
        add(f"{OLD_BACKUP_DIR}/respaldo_2024-0{d + 1}-15.zip", "blob", 10 * MB * scale)
    return entries


def _seed_text(part: str, seed: int, scale: int, mix: Mix) -> str:
    """The random generator's seed for one part of a dataset (the photo-heavy mix keeps the
    seeds it had before mixes existed, so its cached datasets stay valid)."""
    return f"{part}/{seed}/{scale}" if mix == PHOTOS else f"{part}/{mix.name}/{seed}/{scale}"


def tree_summary(entries: Iterable[Entry]) -> dict[str, int]:
    """Counts and bytes of what is backed up, and of the junk left out."""
    out = {"files": 0, "bytes": 0, "photo_files": 0, "photo_bytes": 0, "folders": 0,
           "junk_files": 0, "junk_bytes": 0, "links": 0}
    folders: set[str] = set()
    for e in entries:
        if e.junk:
            out["junk_files"] += 1
            out["junk_bytes"] += e.size
            continue
        if e.kind == "link":
            out["links"] += 1
            continue
        out["files"] += 1
        out["bytes"] += e.size
        if e.kind == "photo":
            out["photo_files"] += 1
            out["photo_bytes"] += e.size
        parent = PurePosixPath(e.rel).parent
        while str(parent) != "." and str(parent) not in folders:
            folders.add(str(parent))
            parent = parent.parent
    out["folders"] = len(folders)
    return out


# --- contents: deterministic from each entry's seed -------------------------------------------


def _ident(rng: random.Random) -> str:
    return f"{rng.choice(PALABRAS)}_{rng.choice(PALABRAS)}"


def _ascii(word: str) -> str:
    # identifiers in code drop the accents: "información" -> "informacion"
    plain = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()
    return plain or "x"


def _py_lines(rng: random.Random) -> Iterator[str]:
    while True:
        fn = _ascii(_ident(rng))
        var = _ascii(rng.choice(PALABRAS))
        yield rng.choice([
            f"def {fn}(persona_id: int, {var}: str | None = None) -> dict:",
            f'    """Devuelve {" ".join(rng.choices(PALABRAS, k=rng.randint(4, 12)))}."""',
            f"    {var} = db.session.get(Persona, persona_id)",
            f"    if {var} is None:",
            f'        raise ValueError("{" ".join(rng.choices(PALABRAS, k=6))}")',
            f"    return {{'id': {var}.id, '{var}': {var}.{fn}, 'n': {rng.randint(0, 99999)}}}",
            f"# {' '.join(rng.choices(PALABRAS, k=rng.randint(3, 14)))}",
            f"from app.{rng.choice(MODULOS)}.{_ascii(rng.choice(PALABRAS))} import {fn}",
            f'@bp.route("/{_ascii(rng.choice(PALABRAS))}/<int:id>", methods=["GET", "POST"])',
            f"class {fn.title().replace('_', '')}(db.Model):",
            f"    {var} = db.Column(db.String({rng.choice([20, 50, 120, 255])}), nullable=False)",
            f"    for {var} in {fn}(limite={rng.randint(1, 500)}):",
            "",
        ])


def _html_lines(rng: random.Random) -> Iterator[str]:
    yield '{% extends "base.html" %}'
    while True:
        words = " ".join(rng.choices(PALABRAS, k=rng.randint(2, 10)))
        yield rng.choice([
            f'  <div class="col-md-{rng.randint(1, 12)}"><label>{words}</label></div>',
            f"  <p>{words}</p>",
            f'  <input type="text" name="{_ascii(_ident(rng))}" value="{{{{ persona.'
            f'{_ascii(rng.choice(PALABRAS))} }}}}">',
            "{% for p in personas %}<tr><td>{{ p.nombre }}</td><td>{{ p.curp }}</td></tr>"
            "{% endfor %}",
            f'<a href="{{{{ url_for(\'{rng.choice(MODULOS)}.ver\', id={rng.randint(1, 9999)})'
            f' }}}}">{words}</a>',
        ])


def _js_lines(rng: random.Random) -> Iterator[str]:
    while True:
        fn = _ascii(_ident(rng))
        yield rng.choice([
            f"function {fn}(id) {{ return fetch('/api/{rng.choice(MODULOS)}/' + id); }}",
            f"  const {fn} = document.querySelector('#{_ascii(rng.choice(PALABRAS))}');",
            f"  // {' '.join(rng.choices(PALABRAS, k=rng.randint(3, 9)))}",
            f".{fn} {{ margin: {rng.randint(0, 40)}px; color: #{rng.getrandbits(24):06x}; }}",
            "}",
        ])


def _record(rng: random.Random) -> dict[str, Any]:
    return {
        "id": rng.randint(1, 10_000_000),
        "nombre": rng.choice(NOMBRES),
        "apellidos": f"{rng.choice(APELLIDOS)} {rng.choice(APELLIDOS)}",
        "curp": "".join(rng.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", k=18)),
        "domicilio": f"{rng.choice(CALLES)} {rng.randint(1, 999)}, {rng.choice(MUNICIPIOS)}",
        "telefono": f"{rng.randint(200, 999)}{rng.randint(1_000_000, 9_999_999)}",
        "fecha": f"20{rng.randint(10, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "estado": rng.choice(["pendiente", "atendido", "turnado", "archivado"]),
        "observaciones": " ".join(rng.choices(PALABRAS, k=rng.randint(0, 25))),
    }


def _json_lines(rng: random.Random) -> Iterator[str]:
    yield "["
    while True:
        yield json.dumps(_record(rng), ensure_ascii=False, indent=2) + ","


def _csv_lines(rng: random.Random) -> Iterator[str]:
    yield "id,nombre,apellidos,curp,domicilio,telefono,fecha,estado,observaciones"
    while True:
        r = _record(rng)
        yield ",".join(f'"{v}"' if isinstance(v, str) and "," in v else str(v) for v in r.values())


def _txt_lines(rng: random.Random) -> Iterator[str]:
    yield f"Oficio {rng.randint(1, 9999)}/{rng.randint(2015, 2025)}"
    while True:
        yield " ".join(rng.choices(PALABRAS, k=rng.randint(6, 24))).capitalize() + "."


def _log_lines(rng: random.Random) -> Iterator[str]:
    t = rng.randint(1_600_000_000, 1_750_000_000)
    while True:
        t += rng.randint(0, 30)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
        yield (f"{stamp},{rng.randint(0, 999):03d} {rng.choice(['INFO', 'INFO', 'WARNING'])} "
               f"app.{rng.choice(MODULOS)}: {rng.choice(['GET', 'POST'])} /"
               f"{rng.choice(MODULOS)}/{rng.randint(1, 99999)} {rng.choice([200, 200, 302, 404])} "
               f"{rng.random():.3f}s usuario={_ascii(rng.choice(NOMBRES)).lower()}")


LINES: dict[str, Callable[[random.Random], Iterator[str]]] = {
    "py": _py_lines, "html": _html_lines, "js": _js_lines, "css": _js_lines,
    "json": _json_lines, "csv": _csv_lines, "txt": _txt_lines, "log": _log_lines,
}


def content(entry: Entry) -> bytes:
    """The bytes of one file: random for photos, git objects and old zips; text otherwise."""
    rng = random.Random(entry.seed)
    if entry.kind == "photo":
        # a JPEG's first and last markers around incompressible bytes
        body = rng.randbytes(max(0, entry.size - 13))
        return (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + body + b"\xff\xd9")[: entry.size]
    if entry.kind in ("gitobj", "blob"):
        return rng.randbytes(entry.size)
    if entry.kind == "pyc":
        # bytecode is partly compressible: a header, then code-like text mixed with noise
        text = _text(_py_lines(rng), entry.size // 2)
        return (b"\xa7\r\r\n" + rng.randbytes(12) + text + rng.randbytes(entry.size))[: entry.size]
    return _text(LINES[entry.kind](rng), entry.size)


def _text(lines: Iterator[str], size: int) -> bytes:
    parts: list[bytes] = []
    total = 0
    while total < size:
        line = next(lines).encode() + b"\n"
        parts.append(line)
        total += len(line)
    data = b"".join(parts)[:size]
    cut = data.rfind(b"\n")
    # end on a whole line (and a whole UTF-8 character) unless that loses too much
    return data[: cut + 1] if cut >= size - 200 else data


# --- the database --------------------------------------------------------------------------------

SCHEMA = """
CREATE TABLE personas (
    id INTEGER PRIMARY KEY, curp TEXT NOT NULL, nombre TEXT NOT NULL, apellidos TEXT NOT NULL,
    fecha_nacimiento TEXT, domicilio TEXT, municipio TEXT, telefono TEXT, correo TEXT,
    foto TEXT, notas TEXT, creado_en TEXT NOT NULL, actualizado_en TEXT
);
CREATE UNIQUE INDEX idx_personas_curp ON personas(curp);
CREATE INDEX idx_personas_apellidos ON personas(apellidos, nombre);
CREATE TABLE expedientes (
    id INTEGER PRIMARY KEY, persona_id INTEGER NOT NULL REFERENCES personas(id),
    folio TEXT NOT NULL, tipo TEXT NOT NULL, estado TEXT NOT NULL, descripcion TEXT,
    creado_en TEXT NOT NULL
);
CREATE INDEX idx_expedientes_persona ON expedientes(persona_id);
CREATE TABLE bitacora (
    id INTEGER PRIMARY KEY, usuario TEXT NOT NULL, accion TEXT NOT NULL, tabla TEXT NOT NULL,
    registro_id INTEGER, detalle TEXT, ts TEXT NOT NULL
);
CREATE INDEX idx_bitacora_ts ON bitacora(ts);
CREATE TABLE mensajes (
    id INTEGER PRIMARY KEY, de TEXT NOT NULL, para TEXT NOT NULL, texto TEXT NOT NULL,
    ts TEXT NOT NULL
);
"""


#: the smallfiles mix's attachments (scanned forms, signatures): random bytes, as compressed
#: images are, a few KB each
BLOB_SCHEMA = """
CREATE TABLE adjuntos (
    id INTEGER PRIMARY KEY, persona_id INTEGER NOT NULL REFERENCES personas(id),
    nombre TEXT NOT NULL, datos BLOB NOT NULL, creado_en TEXT NOT NULL
);
CREATE INDEX idx_adjuntos_persona ON adjuntos(persona_id);
"""


def _stamp(rng: random.Random) -> str:
    when = rng.randint(1_420_000_000, 1_760_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))


def _db_batch(rng: random.Random, first_id: int, n: int) -> dict[str, list[tuple[Any, ...]]]:
    """About n rows spread over the four tables the way a SIIP-like app fills them."""
    personas, expedientes, bitacora, mensajes = [], [], [], []
    for i in range(first_id, first_id + n):
        r = _record(rng)
        personas.append((
            i, f"{r['curp']}{i:08d}", r["nombre"], r["apellidos"], r["fecha"], r["domicilio"],
            rng.choice(MUNICIPIOS), r["telefono"], f"{_ascii(r['nombre']).lower()}{i}@correo.mx",
            f"uploads/SIIP CON FOTO/{r['apellidos']} {r['nombre']}/fotografía 001.jpg",
            r["observaciones"], _stamp(rng), _stamp(rng),
        ))
        for k in range(rng.randint(0, 3)):
            expedientes.append((
                i * 4 + k, i, f"EXP-{rng.randint(2015, 2025)}-{i:07d}-{k}",
                rng.choice(["alta", "renovación", "baja", "corrección", "constancia"]),
                r["estado"], " ".join(rng.choices(PALABRAS, k=rng.randint(10, 60))), _stamp(rng),
            ))
        for k in range(rng.randint(1, 5)):
            detalle = json.dumps({"antes": r["estado"], "campos": rng.sample(list(r), 3),
                                  "ip": f"10.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"})
            bitacora.append((i * 8 + k, _ascii(rng.choice(NOMBRES)).lower(),
                             rng.choice(["alta", "edición", "consulta", "baja"]),
                             rng.choice(["personas", "expedientes"]), i, detalle, _stamp(rng)))
        if rng.random() < MESSAGE_PER_PERSON:
            mensajes.append((i, rng.choice(NOMBRES), rng.choice(NOMBRES),
                             " ".join(rng.choices(PALABRAS, k=rng.randint(3, 40))), _stamp(rng)))
    return {"personas": personas, "expedientes": expedientes, "bitacora": bitacora,
            "mensajes": mensajes}


def _blob_batch(rng: random.Random, first_id: int, n: int) -> dict[str, list[tuple[Any, ...]]]:
    """One to five attachments of 2-60 KB (median 8 KB) for each of n persons."""
    rows = [(i * 8 + k, i, f"{rng.choice(FOTO_NOMBRES)} {k + 1:03d}.jpg",
             rng.randbytes(_lognormal_size(rng, 8_000, 0.9, 2_000, 60_000)), _stamp(rng))
            for i in range(first_id, first_id + n) for k in range(rng.randint(1, 5))]
    return {"adjuntos": rows}


def _insert(con: sqlite3.Connection, batch: dict[str, list[tuple[Any, ...]]]) -> None:
    for table, rows in batch.items():
        if rows:
            marks = ",".join("?" * len(rows[0]))
            con.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)


def generate_database(path: Path, seed: int, scale: int, mix: Mix = PHOTOS) -> None:
    """A WAL database of about the mix's ``db_bytes`` x scale, then a -wal tail left by a
    process that dies.

    The tail is written by a child that exits without closing its connection: SQLite's
    checkpoint-on-close never runs, so the committed frames stay in ``-wal`` as they do under a
    live app.
    """
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rng = random.Random(_seed_text("db", seed, scale, mix))
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")        # generation speed; durability is irrelevant here
    con.executescript(SCHEMA + (BLOB_SCHEMA if mix.db_blobs else ""))
    next_id = 1
    # attachments make a person's rows ~25x bigger: smaller batches keep the size on target
    batch = 200 if mix.db_blobs else 5_000
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    while con.execute("PRAGMA page_count").fetchone()[0] * page_size < mix.db_bytes * scale:
        con.execute("BEGIN")
        _insert(con, _db_batch(rng, next_id, batch))
        if mix.db_blobs:
            _insert(con, _blob_batch(rng, next_id, batch))
        con.execute("COMMIT")
        next_id += batch
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()

    pid = os.fork()
    if pid == 0:                                      # child: write the tail, then vanish
        code = 1
        try:
            tail = sqlite3.connect(path, isolation_level=None)
            tail.execute("PRAGMA wal_autocheckpoint=0")
            wal = Path(f"{path}-wal")
            step = 20 if mix.db_blobs else 500
            while not wal.exists() or wal.stat().st_size < mix.wal_bytes * scale:
                tail.execute("BEGIN")
                _insert(tail, _db_batch(rng, next_id, step))
                if mix.db_blobs:
                    _insert(tail, _blob_batch(rng, next_id, step))
                tail.execute("COMMIT")
                next_id += step
            code = 0
        finally:
            os._exit(code)                            # no close: no checkpoint
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"writing the -wal tail of {path} failed; delete {path.parent} and retry")


# --- dataset on disk ------------------------------------------------------------------------------


@dataclass
class Dataset:
    """One generated scale of one mix: where things are and what they hold."""

    scale: int
    home: Path             # <data>/scale-N (photo-heavy mix) or <data>/<mix>-N
    summary: dict[str, Any] = field(default_factory=dict)
    mix: Mix = PHOTOS

    @property
    def root(self) -> Path:
        return self.home / "siip"

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def config(self) -> Path:
        return self.home / "siip-watcher.toml"

    @property
    def local_dir(self) -> Path:
        return self.home / "backups"

    @property
    def out(self) -> Path:
        return self.home / "out"


def config_text(ds: Dataset) -> str:
    """The siip-watcher.toml that backs up this dataset to a folder outside the tree."""
    excludes = ", ".join(json.dumps(p) for p in EXCLUDES)
    return f"""# written by scripts/bench_snapshot.py; regenerated with the dataset
name = "siip"

[source]
root = {json.dumps(str(ds.root))}
databases = [{json.dumps(DB_NAME)}]
exclude = [{excludes}]

[schedule]
enabled = false

[local]
dir = {json.dumps(str(ds.local_dir))}

[compression]
level = 3
threads = 0

[drive]
enabled = false

[email]
enabled = false
"""


# generation's steps in order, each logged as it goes
def ensure_dataset(data: Path, seed: int, scale: int,  # noqa: PLR0915
                   mix: Mix = PHOTOS) -> Dataset:
    """Generate the dataset for this scale and mix unless an identical one is already there."""
    home = data / (f"scale-{scale}" if mix == PHOTOS else f"{mix.name}-{scale}")
    ds = Dataset(scale, home, mix=mix)
    want: dict[str, Any] = {"generator": GENERATOR_VERSION, "seed": seed, "scale": scale}
    if mix != PHOTOS:
        want["mix"] = mix.name
    marker = ds.home / MARKER
    if marker.exists():
        summary = json.loads(marker.read_text())
        wal = Path(f"{ds.db}-wal")
        if {k: summary.get(k) for k in want} == want:
            if not wal.exists() or wal.stat().st_size == 0:
                log(f"scale {scale}: the -wal was checkpointed away; regenerating the database")
                generate_database(ds.db, seed, scale, mix)
                summary.update(_db_summary(ds))
                marker.write_text(json.dumps(summary, indent=2) + "\n")
            ds.summary = summary
            ds.config.write_text(config_text(ds))
            return ds
    if ds.home.exists():
        if not (ds.home / STAMP).exists():
            raise SystemExit(f"{ds.home} exists and was not made by this script; "
                             "choose another --data folder")
        log(f"scale {scale}: removing an outdated or incomplete dataset at {ds.home}")
        shutil.rmtree(ds.home)

    entries = plan_tree(seed, scale, mix)
    summary = tree_summary(entries)
    need = (sum(e.size for e in entries) + mix.db_bytes * scale) * 2.2   # data + one set of outputs
    free = shutil.disk_usage(data if data.exists() else data.parent).free
    if free < need:
        raise SystemExit(f"scale {scale} needs about {need / 1e9:.1f} GB free at {data} and "
                         f"{free / 1e9:.1f} GB are; free some space or use a smaller --scale")
    ds.home.mkdir(parents=True)
    (ds.home / STAMP).write_text("made by scripts/bench_snapshot.py; safe to delete\n")
    started = time.perf_counter()
    log(f"scale {scale}: writing {summary['files']:,} files ({summary['bytes'] / 1e9:.2f} GB) "
        f"and {summary['junk_files']:,} junk files under {ds.root}")
    written = 0
    for i, e in enumerate(entries):
        target = ds.root / e.rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if e.kind == "link":
            target.symlink_to(e.target)
        else:
            data = content(e)
            target.write_bytes(data)
            written += 0 if e.junk else len(data)
        if i % 2_000 == 0:
            log(f"  {i:,}/{len(entries):,}")
    log(f"scale {scale}: writing the database ({mix.db_bytes * scale / 1e6:.0f} MB + -wal tail)")
    generate_database(ds.db, seed, scale, mix)
    summary["bytes"] = written          # text files end on a whole line: a little under plan
    summary.update(want)
    summary.update(_db_summary(ds))
    summary["generated_in_s"] = round(time.perf_counter() - started, 1)
    ds.summary = summary
    ds.config.write_text(config_text(ds))
    marker.write_text(json.dumps(summary, indent=2) + "\n")   # last: marks the dataset complete
    log(f"scale {scale}: dataset ready in {summary['generated_in_s']} s")
    return ds


def _db_summary(ds: Dataset) -> dict[str, int]:
    wal = Path(f"{ds.db}-wal")
    return {"db_bytes": ds.db.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0}


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One run of one contender."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float     # the largest process of the run
    output_bytes: int
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


def log(message: str) -> None:
    """Progress goes to stderr so that --json's stdout stays one document."""
    print(message, file=sys.stderr, flush=True)


def _wait(proc: subprocess.Popen[bytes]) -> tuple[int, os.rusage_result]:
    """Reap one child with wait4, which reports that child's own peak RSS and CPU time."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage


def _cpu(usage: os.rusage_result) -> float:
    return usage.ru_utime + usage.ru_stime


def _rss_mb(usage: os.rusage_result) -> float:
    return usage.ru_maxrss / 1024           # Linux reports KiB


def _clean_env() -> dict[str, str]:
    # the benchmark's config must be the whole story: no SIIP_WATCHER_* override leaks in
    return {k: v for k, v in os.environ.items() if not k.startswith("SIIP_WATCHER_")}


def compile_bytecode(checkouts: Sequence[Path]) -> None:
    """Write the bytecode of each checkout's ``watcher`` package, as pip does when it installs
    a wheel, so that every ``once`` starts as an installed one does.

    Without it, a machine whose environment sets PYTHONDONTWRITEBYTECODE (this one does)
    compiles all of siip-watcher's modules from source at every start: 50 modules, about
    60 ms of CPU in each run (and in each tree packer it starts), which no installed copy
    pays. py_compile writes the files whatever that variable says.
    """
    for checkout in checkouts:
        compileall.compile_dir(str(checkout / "watcher"), quiet=1)


def watcher_command(override: str | None) -> list[str]:
    """How to start siip-watcher: --watcher, else the repository's venv script, else -m."""
    if override:
        return shlex.split(override)
    script = REPO / ".venv" / "bin" / "siip-watcher"
    if script.exists():
        return [str(script)]
    python = REPO / ".venv" / "bin" / "python"
    return [str(python if python.exists() else sys.executable), "-m", "watcher"]


def baseline_command() -> list[str]:
    """``once`` of the checkout that PYTHONPATH names: ``-P`` keeps Python from putting the
    working directory (this repository, where contenders run) before it."""
    python = REPO / ".venv" / "bin" / "python"
    return [str(python if python.exists() else sys.executable), "-P", "-m", "watcher"]


def helper_command(name: str) -> list[str]:
    """``once`` started through this script's helper ``name`` (``_once-full``, ...)."""
    return [sys.executable, str(Path(__file__).resolve()), name]


def once_full(argv: list[str]) -> int:
    """The ``full`` contender: the real CLI, with only the database check swapped."""
    # a contender imports the product itself: the import is part of what it times, and
    # PYTHONPATH may name another checkout to measure
    from watcher import cli  # noqa: PLC0415
    from watcher.snapshot import sqlite_copy  # noqa: PLC0415

    sqlite_copy.CHECK_PRAGMA = "integrity_check"
    return cli.main(argv)


def once_sniff_all(argv: list[str]) -> int:
    """The ``sniffall`` contender: the real CLI, with every regular file of the tree opened
    to look for the SQLite header instead of only the candidates (watcher/snapshot/tree.py)."""
    from watcher import cli  # noqa: PLC0415 - as in once_full
    from watcher.snapshot import tree  # noqa: PLC0415 - as in once_full

    tree.sqlite_candidate = lambda name, beside: True
    return cli.main(argv)


#: --stat-pass: how each rule decides which files to open for the SQLite header
STAT_PASS_RULES = ("off", "candidates", "every file")


def stat_pass(config: Path, repeat: int) -> int:
    """The ``--stat-pass`` helper: time ``summarize`` per rule, warm and cold, interleaved;
    prints {rule: {"warm": [[wall, cpu], ...], "cold": [...]}} as JSON."""
    # the checkout PYTHONPATH names, as for a contender (see once_full)
    from watcher.config.settings import load  # noqa: PLC0415
    from watcher.snapshot import tree  # noqa: PLC0415

    cfg = load(config)
    candidate = tree.sqlite_candidate
    rules = {
        "off": (replace(cfg, source=replace(cfg.source, discover_databases=False)), candidate),
        "candidates": (replace(cfg, source=replace(cfg.source, discover_databases=True)),
                       candidate),
        "every file": (replace(cfg, source=replace(cfg.source, discover_databases=True)),
                       lambda name, beside: True),
    }
    times: dict[str, dict[str, list[list[float]]]] = {r: {"warm": [], "cold": []}
                                                       for r in rules}
    for _ in range(repeat):
        for cache in ("warm", "cold"):
            for rule, (rule_cfg, pick) in rules.items():
                if cache == "cold":
                    _drop_cached_data(cfg.source.root)
                tree.sqlite_candidate = pick
                wall, cpu = time.perf_counter(), time.process_time()
                tree.summarize(rule_cfg)
                times[rule][cache].append([time.perf_counter() - wall,
                                           time.process_time() - cpu])
    json.dump(times, sys.stdout)
    return 0


def _drop_cached_data(root: Path) -> None:
    """Drop the contents of the files under ``root`` from the page cache (not the metadata,
    and nothing of other programs: a shared machine)."""
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # a link
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def bench_stat_pass(ds: Dataset, repeat: int) -> dict[str, Any]:
    """Run the ``--stat-pass`` helper on one dataset; medians per rule and cache state."""
    log(f"scale {ds.scale}: stat pass, {repeat} rounds")
    proc = subprocess.run(helper_command("_stat-pass") + [str(ds.config), str(repeat)],
                          capture_output=True, text=True, cwd=REPO, env=_clean_env(), check=False)
    if proc.returncode != 0:
        raise SystemExit(f"the stat-pass helper failed: {proc.stderr[-2000:]}")
    raw = json.loads(proc.stdout)
    return {"scale": ds.scale, "dataset": ds.summary, "raw": raw, "median": {
        rule: {cache: {"wall_s": round(statistics.median(t[0] for t in runs), 3),
                       "cpu_s": round(statistics.median(t[1] for t in runs), 3)}
               for cache, runs in by_cache.items()}
        for rule, by_cache in raw.items()}}


def print_stat_pass(results: Sequence[dict[str, Any]], repeat: int) -> None:
    """The ``--stat-pass`` table: median wall and CPU seconds per rule, warm and cold."""
    for res in results:
        d = res["dataset"]
        print(f"\nscale {res['scale']}x: stat pass over {d['files']:,} files; median of "
              f"{repeat} rounds")
        print(f"{'databases looked for in':24s} {'warm wall':>10s} {'warm cpu':>9s} "
              f"{'cold wall':>10s} {'cold cpu':>9s}")
        for rule in STAT_PASS_RULES:
            m = res["median"][rule]
            print(f"{rule:24s} {m['warm']['wall_s']:10.3f} {m['warm']['cpu_s']:9.3f} "
                  f"{m['cold']['wall_s']:10.3f} {m['cold']['cpu_s']:9.3f}")


def run_once(ds: Dataset, cmd: list[str], logs: Path,  # noqa: PLR0913 - options, named
             env: dict[str, str] | None = None, *, fresh: bool = True,
             extra: Sequence[str] = ()) -> Sample:
    """``siip-watcher once --no-upload --no-email --json`` into an empty local dir; ``env``
    adds settings (``SIIP_WATCHER_*``) to the clean environment. With ``fresh=False`` the
    local dir keeps what earlier runs stored (the working day's delta needs its base full);
    ``extra`` adds options to ``once`` (``--full``)."""
    if fresh:
        shutil.rmtree(ds.local_dir, ignore_errors=True)
    err_path = logs / "once.stderr"
    with open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [*cmd, "-c", str(ds.config), "once", "--no-upload", "--no-email", "--json", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, cwd=REPO,
            env={**_clean_env(), **(env or {})},
        )
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        proc.stdout.close()
        code, usage = _wait(proc)
        wall = time.perf_counter() - started
    detail: dict[str, Any] = {"exit_code": code}
    size = 0
    try:
        report = json.loads(stdout)
        snap = report.get("snapshot") or {}
        size = int(snap.get("size") or 0)
        detail.update(status=report.get("status"), archive=snap.get("file"),
                      kind=snap.get("kind", "full"), base=snap.get("base"),
                      bytes_in=snap.get("bytes_in"), files=snap.get("files"),
                      warnings=[w.get("message") for w in report.get("warnings", [])],
                      errors=[e.get("message") for e in report.get("errors", [])])
    except (ValueError, AttributeError):
        detail["stdout"] = stdout.decode(errors="replace")[-500:]
    if not size:
        archives = sorted(ds.local_dir.glob("*.tar.zst"), key=lambda a: a.stat().st_mtime_ns)
        size = archives[-1].stat().st_size if archives else 0
    if code not in (0,):
        detail["stderr_tail"] = err_path.read_text(errors="replace")[-1500:]
    return Sample(wall, _cpu(usage), _rss_mb(usage), size, code == 0 and size > 0, detail)


def tar_excludes(patterns: Sequence[str]) -> list[str]:
    """GNU tar --exclude options for the gitignore patterns (tar matches unanchored names)."""
    return [f"--exclude={p.strip('/')}" for p in patterns]


def run_tar(ds: Dataset, logs: Path) -> Sample:
    """``tar -cf - -C root --exclude=... . | zstd -T0 -3 -o out.tar.zst``; fsync timed apart."""
    out_dir = ds.out / "tar"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    archive = out_dir / "out.tar.zst"
    with open(logs / "tar.stderr", "wb") as err:
        started = time.perf_counter()
        tar = subprocess.Popen(
            ["tar", "-cf", "-", "-C", str(ds.root), *tar_excludes(EXCLUDES), "."],
            stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
        )
        zstd = subprocess.Popen(
            ["zstd", "-q", "-f", "-T0", "-3", "-o", str(archive)],
            stdin=tar.stdout, stderr=err, stdout=subprocess.DEVNULL,
        )
        assert tar.stdout is not None
        tar.stdout.close()                      # zstd alone holds the pipe's read end now
        tar_code, tar_usage = _wait(tar)
        zstd_code, zstd_usage = _wait(zstd)
        wall = time.perf_counter() - started
    # siip-watcher fsyncs its archive and the pipe does not: time the difference separately
    fsync_started = time.perf_counter()
    fd = os.open(archive, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_s = time.perf_counter() - fsync_started
    ok = tar_code == 0 and zstd_code == 0
    return Sample(
        wall, _cpu(tar_usage) + _cpu(zstd_usage), max(_rss_mb(tar_usage), _rss_mb(zstd_usage)),
        archive.stat().st_size if archive.exists() else 0, ok,
        {"tar_rss_mb": round(_rss_mb(tar_usage), 1), "zstd_rss_mb": round(_rss_mb(zstd_usage), 1),
         "tar_cpu_s": round(_cpu(tar_usage), 2), "zstd_cpu_s": round(_cpu(zstd_usage), 2),
         "fsync_after_s": round(fsync_s, 3), "exit_codes": [tar_code, zstd_code]},
    )


def run_old(ds: Dataset, logs: Path) -> Sample:
    """The old in-app routine in a subprocess: shutil.copy of the database, zipfile of the tree."""
    out_dir = ds.out / "old"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    with open(logs / "old.stderr", "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_old-way", str(ds.root), str(out_dir)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )
        code, usage = _wait(proc)
        wall = time.perf_counter() - started
    size = sum(p.stat().st_size for p in out_dir.iterdir())
    return Sample(wall, _cpu(usage), _rss_mb(usage), size, code == 0, {"exit_code": code})


def old_way(root: Path, out_dir: Path) -> None:
    """What the app did before siip-watcher: copy the database file, zip the project with deflate.

    The copy of a live WAL database misses the commits still in ``-wal`` (the reason for
    siip-watcher); it is timed here because it is what the old routine did.
    """
    shutil.copy(root / DB_NAME, out_dir / DB_NAME)
    skip = {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal"}
    with zipfile.ZipFile(out_dir / "siip.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = Path(dirpath).relative_to(root).as_posix()
            prefix = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = sorted(d for d in dirnames if not is_excluded(f"{prefix}{d}/x", EXCLUDES))
            for name in sorted(filenames):
                rel = prefix + name
                if rel in skip or is_excluded(rel, EXCLUDES):
                    continue
                zf.write(os.path.join(dirpath, name), rel)


def warm_read(root: Path) -> dict[str, float]:
    """Read every file once so the contenders all start on a warm page cache."""
    started = time.perf_counter()
    total = files = 0
    buf = bytearray(1 << 20)
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            with open(path, "rb", buffering=0) as f:
                while n := f.readinto(buf):
                    total += n
            files += 1
    wall = time.perf_counter() - started
    return {"files": files, "bytes": total, "seconds": round(wall, 2),
            "mb_per_s": round(total / MB / wall, 1) if wall else 0.0}


class DatabaseHolder:
    """A process that keeps the database open as the running web app would.

    With it open, no contender's connection is the last one to close, so none checkpoints the
    ``-wal`` away, and every repeat backs up the same files. It exits with ``os._exit`` so it does
    not checkpoint either.
    """

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_hold-db", str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise SystemExit(f"could not open {db} to hold it during the benchmark")

    def close(self) -> None:
        """Let the holder go (closing its stdin)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()


def hold_db(db: Path) -> None:
    """Body of the holder process: open, read, wait for stdin to close, vanish without closing."""
    con = sqlite3.connect(db)
    con.execute("SELECT count(*) FROM sqlite_master").fetchall()
    print("ready", flush=True)
    sys.stdin.read()
    os._exit(0)


def _files_state(ds: Dataset) -> dict[str, int]:
    return {suffix or "db": Path(f"{ds.db}{suffix}").stat().st_size
            for suffix in ("", "-wal") if Path(f"{ds.db}{suffix}").exists()}


def bench_scale(ds: Dataset, contenders: Sequence[str], repeat: int, old_repeat: int,  # noqa: PLR0913
                watcher: list[str], baseline: Path | None = None) -> dict[str, Any]:
    """Warm the cache, then run the contenders interleaved ``repeat`` times; medians and peaks.

    The old way runs only in the first ``old_repeat`` rounds: it is slow and the machine shared.
    ``baseline`` is the checkout whose ``once`` the contender "base" runs.
    """
    logs = ds.home / "logs"
    logs.mkdir(exist_ok=True)
    log(f"scale {ds.scale}: warm read of {ds.root}")
    warm = warm_read(ds.root)
    log(f"  {warm['files']:,} files, {warm['bytes'] / 1e9:.2f} GB in {warm['seconds']} s "
        f"({warm['mb_per_s']} MB/s)")
    runners: dict[str, Callable[[], Sample]] = {
        "once": lambda: run_once(ds, watcher, logs),
        "full": lambda: run_once(ds, helper_command("_once-full"), logs),
        "nodiscover": lambda: run_once(ds, watcher, logs,
                                       {"SIIP_WATCHER_SOURCE_DISCOVER_DATABASES": "false"}),
        "sniffall": lambda: run_once(ds, helper_command("_once-sniff-all"), logs),
        "base": lambda: run_once(ds, baseline_command(), logs, {"PYTHONPATH": str(baseline)}),
        "tar": lambda: run_tar(ds, logs),
        "old": lambda: run_old(ds, logs),
    }
    samples: dict[str, list[Sample]] = {c: [] for c in contenders}
    db_before = _files_state(ds)
    load_before = os.getloadavg()
    holder = DatabaseHolder(ds.db)
    try:
        for i in range(max(repeat, old_repeat)):
            for name in contenders:
                if i >= (old_repeat if name == "old" else repeat):
                    continue
                os.sync()                        # no earlier write-back lands inside a timing
                sample = runners[name]()
                samples[name].append(sample)
                log(f"  run {i + 1} {name:5s} {sample.wall_s:7.2f} s  "
                    f"cpu {sample.cpu_s:6.2f} s  rss {sample.peak_rss_mb:6.1f} MB  "
                    f"out {sample.output_bytes / MB:8.1f} MB" + ("" if sample.ok else "  FAILED"))
                if not sample.ok:
                    log(f"    {json.dumps(sample.detail, ensure_ascii=False)[:2000]}")
                _clean_outputs(ds)
    finally:
        holder.close()
    load_after = os.getloadavg()
    db_after = _files_state(ds)
    if db_after != db_before:
        log(f"  warning: the database files changed during the benchmark: "
            f"{db_before} -> {db_after}")
    return {
        "scale": ds.scale,
        "mix": ds.mix.name,
        "dataset": ds.summary,
        "warm_read": warm,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "database_files_unchanged": db_after == db_before,
        "contenders": {name: summarize(s) for name, s in samples.items()},
    }


def _clean_outputs(ds: Dataset) -> None:
    # archives are deleted between runs so that 4x repeats never fill the disk
    shutil.rmtree(ds.out, ignore_errors=True)
    shutil.rmtree(ds.local_dir, ignore_errors=True)


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Median wall and CPU time, the highest peak RSS, the last output size, every raw sample."""
    good = [s for s in samples if s.ok] or list(samples)
    return {
        "ok": all(s.ok for s in samples),
        "wall_s": round(statistics.median(s.wall_s for s in good), 3),
        "cpu_s": round(statistics.median(s.cpu_s for s in good), 3),
        "peak_rss_mb": round(max(s.peak_rss_mb for s in good), 1),
        "output_bytes": good[-1].output_bytes,
        "runs": [asdict(s) for s in samples],
    }


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """The issue's ratios for one scale, each with its target and whether it is met."""
    c = result["contenders"]
    out: dict[str, Any] = {}
    # the same targets, with quick_check, with integrity_check and for another checkout
    for me in ("once", "full", "base"):
        if me in c and "tar" in c:
            wall = c[me]["wall_s"] / c["tar"]["wall_s"]
            synced = c["tar"]["wall_s"] + statistics.median(
                r["detail"]["fsync_after_s"] for r in c["tar"]["runs"])
            tar_bytes = c["tar"]["output_bytes"]
            size = c[me]["output_bytes"] / tar_bytes if tar_bytes else 0.0
            out[f"{me}_over_tar_wall"] = {"value": round(wall, 2), "target": "<= 1.3",
                                          "met": wall <= TARGETS["once_over_tar_wall_max"]}
            out[f"{me}_over_tar_plus_fsync_wall"] = {
                "value": round(c[me]["wall_s"] / synced, 2), "target": "(information)",
                "met": None}
            out[f"size_{me}_over_tar"] = {
                "value": round(size, 4), "target": "within 5%",
                "met": abs(size - 1) <= TARGETS["size_once_over_tar_within"]}
        if me in c and "old" in c:
            speedup = c["old"]["wall_s"] / c[me]["wall_s"]
            out[f"old_over_{me}_wall"] = {"value": round(speedup, 2), "target": ">= 6",
                                          "met": speedup >= TARGETS["old_over_once_wall_min"]}
        if me in c:
            rss = c[me]["peak_rss_mb"]
            out[f"peak_rss_{me}_mb"] = {"value": rss, "target": "< 200",
                                        "met": rss < TARGETS["peak_rss_once_mb_max"]}
    if "once" in c and "base" in c:  # this checkout against --baseline's
        for what in ("wall", "cpu"):
            out[f"once_over_base_{what}"] = {
                "value": round(c["once"][f"{what}_s"] / c["base"][f"{what}_s"], 3),
                "target": "(information)", "met": None}
    # what looking for unlisted databases costs, with the rule used and with every file read
    for me in ("once", "sniffall"):
        if me in c and "nodiscover" in c:
            for what in ("wall", "cpu"):
                out[f"{me}_over_nodiscover_{what}"] = {
                    "value": round(c[me][f"{what}_s"] / c["nodiscover"][f"{what}_s"], 3),
                    "target": "(information)", "met": None}
    return out


# --- reporting ------------------------------------------------------------------------------------

LABELS = {"once": "siip-watcher once", "full": "once, full integrity_check",
          "tar": "tar | zstd -T0 -3", "old": "old: copy + zip",
          "nodiscover": "once, discover_databases off", "sniffall": "once, every file sniffed",
          "base": "once of --baseline"}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    zstd = subprocess.run(["zstd", "--version"], capture_output=True, text=True,
                          check=False).stdout.strip()
    tar = subprocess.run(["tar", "--version"], capture_output=True, text=True,
                         check=False).stdout.splitlines()
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "zstd_cli": zstd, "tar": tar[0] if tar else "", "mem_gb": _mem_gb(),
    }


def _mem_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def print_machine(m: dict[str, Any]) -> None:
    """One line: what the figures were measured on."""
    print(f"machine: {m['nproc']} x {m['cpu']}, {m['mem_gb']} GB, Python {m['python']}, "
          f"{m['zstd_cli']}, {m['tar']}")


def print_table(results: Sequence[dict[str, Any]], repeat: int, old_repeat: int) -> None:
    """A human-readable table per scale, the ratios, and the RSS across scales."""
    for res in results:
        d = res["dataset"]
        print(f"\n{res['mix']} {res['scale']}x: {d['files']:,} files in {d['folders']:,} folders, "
              f"{d['bytes'] / 1e9:.2f} GB (photos {d['photo_bytes'] / 1e9:.2f} GB), database "
              f"{d['db_bytes'] / 1e6:.0f} MB + -wal {d['wal_bytes'] / 1e6:.1f} MB; "
              f"junk left out: {d['junk_files']:,} files")
        w = res["warm_read"]
        print(f"warm read first: {w['bytes'] / 1e9:.2f} GB in {w['seconds']} s "
              f"({w['mb_per_s']} MB/s); load average {res['loadavg_before']} -> "
              f"{res['loadavg_after']}; median of {repeat} runs (old way: {old_repeat})")
        print(f"{'contender':30s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS MB':>12s} "
              f"{'output MB':>10s}")
        for name, c in res["contenders"].items():
            flag = "" if c["ok"] else "  (FAILED runs)"
            print(f"{LABELS[name]:30s} {c['wall_s']:8.2f} {c['cpu_s']:8.2f} "
                  f"{c['peak_rss_mb']:12.1f} {c['output_bytes'] / MB:10.1f}{flag}")
        for key, r in ratios(res).items():
            met = {True: "met", False: "MISSED", None: ""}[r["met"]]
            print(f"  {key:32s} {r['value']:>8}  target {r['target']:14s} {met}")
    rss = [(r["mix"], r["scale"], r["contenders"]["once"]["peak_rss_mb"]) for r in results
           if "once" in r["contenders"]]
    if len(rss) > 1:
        print("\npeak RSS of once by dataset: "
              + ", ".join(f"{mix} {s}x {m:.1f} MB" for mix, s, m in rss))


# --- command line ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's options."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("bench-data"),
                   help="where datasets are generated and cached (default ./bench-data)")
    p.add_argument("--scale", type=int, action="append",
                   help="dataset multiplier; repeat for several (default 1)")
    p.add_argument("--seed", type=int, default=2, help="dataset seed (default 2)")
    p.add_argument("--mix", choices=sorted(MIXES), action="append",
                   help="what the dataset holds: photos (issue 2's photo-heavy tree, the "
                        "default) or smallfiles (issue 9's: small files dominate); repeat for "
                        "both")
    p.add_argument("--repeat", type=int, default=3, help="runs per contender; median (default 3)")
    p.add_argument("--old-repeat", type=int,
                   help="runs of the slow old way (default: --repeat); 1 spares a shared machine")
    p.add_argument("--contenders",
                   help=f"comma-separated, from {','.join(CONTENDERS)} (default "
                        f"{','.join(DEFAULT_CONTENDERS)}); with --working-day from "
                        f"{','.join(WORKING_DAY_CONTENDERS)} (default: all)")
    p.add_argument("--watcher", help="command that starts siip-watcher (default: the repo's .venv)")
    p.add_argument("--baseline", type=Path,
                   help="another checkout of this repository (a git worktree at an earlier "
                        "commit, say): the contender base runs its once, for before and after "
                        "in one run")
    p.add_argument("--generate-only", action="store_true", help="generate the dataset(s) and stop")
    p.add_argument("--stat-pass", action="store_true",
                   help="time only the stat pass, per rule for finding unlisted databases")
    p.add_argument("--working-day", action="store_true",
                   help="one working day's change: a delta once against a full once, "
                        "restic's and borg's second backups (scripts/bench_workday.py)")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    args = p.parse_args(argv)
    args.scale = args.scale or [1]
    args.mix = [MIXES[m] for m in args.mix or [PHOTOS.name]]
    allowed = WORKING_DAY_CONTENDERS if args.working_day else CONTENDERS
    default = WORKING_DAY_CONTENDERS if args.working_day else DEFAULT_CONTENDERS
    args.contenders = [c.strip() for c in (args.contenders or ",".join(default)).split(",")
                       if c.strip()]
    bad = [c for c in args.contenders if c not in allowed]
    if bad or not args.contenders:
        p.error(f"--contenders takes a comma-separated subset of {','.join(allowed)}")
    if ("base" in args.contenders) != (args.baseline is not None):
        p.error("the contender base and --baseline DIR go together")
    if args.baseline is not None and not (args.baseline / "watcher" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline} is not a checkout of this repository (no "
                f"watcher/__init__.py there)")
    args.old_repeat = args.old_repeat or args.repeat
    if min(args.repeat, args.old_repeat, *args.scale) < 1:
        p.error("--repeat, --old-repeat and --scale must be at least 1")
    return args


# the helper processes' entry points first, then the procedure docs/benchmarks.md describes
def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911,PLR0912
    """Generate, warm, time, report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # helper processes the benchmark starts itself
    if argv[:1] == ["_old-way"]:
        old_way(Path(argv[1]), Path(argv[2]))
        return 0
    if argv[:1] == ["_once-full"]:
        return once_full(argv[1:])
    if argv[:1] == ["_once-sniff-all"]:
        return once_sniff_all(argv[1:])
    if argv[:1] == ["_stat-pass"]:
        return stat_pass(Path(argv[1]), int(argv[2]))
    if argv[:1] == ["_hold-db"]:
        hold_db(Path(argv[1]))
        return 0
    args = parse_args(argv)
    data = args.data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    datasets = [ensure_dataset(data, args.seed, s, mix) for mix in args.mix for s in args.scale]
    # the working day's scenario lives in its own module beside this one, which imports this
    # one: imported here, when needed, not at the top
    # bench_workday imports this module by name: it must find this very module, not load a
    # second copy whose classes (Mix, Dataset) compare unequal to this one's
    sys.modules.setdefault("bench_snapshot", sys.modules[__name__])
    import bench_workday  # noqa: PLC0415

    for ds in datasets:
        if (ds.home / bench_workday.JOURNAL).exists():
            log(f"scale {ds.scale}: undoing the working day a stopped run left")
            bench_workday.undo_day(ds)
    compile_bytecode([REPO, *([args.baseline] if args.baseline else [])])
    if args.generate_only:
        for ds in datasets:
            log(f"scale {ds.scale}: {json.dumps(ds.summary)}; config {ds.config}")
        return 0
    if args.stat_pass:
        passes = [bench_stat_pass(ds, args.repeat) for ds in datasets]
        if args.json:
            json.dump({"command": " ".join([Path(sys.executable).name, *sys.argv]),
                       "machine": machine(), "repeat": args.repeat, "results": passes},
                      sys.stdout, indent=2, ensure_ascii=False)
            print()
        else:
            print_stat_pass(passes, args.repeat)
        return 0
    watcher = watcher_command(args.watcher)
    if args.working_day:
        days = [bench_workday.bench_working_day(ds, args.contenders,
                                                args.repeat, args.seed, watcher)
                for ds in datasets]
        if args.json:
            json.dump({"command": " ".join([Path(sys.executable).name, *sys.argv]),
                       "machine": machine(), "repeat": args.repeat, "watcher": watcher,
                       "results": days}, sys.stdout, indent=2, ensure_ascii=False)
            print()
        else:
            print_machine(machine())
            bench_workday.print_working_day(days, args.repeat)
        return 1 if any(not c["ok"] for r in days for c in r["contenders"].values()) else 0
    results = [bench_scale(ds, args.contenders, args.repeat, args.old_repeat, watcher,
                           args.baseline.resolve() if args.baseline else None)
               for ds in datasets]
    for res in results:
        res["ratios"] = ratios(res)
    document = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "repeat": args.repeat,
        "old_repeat": args.old_repeat,
        "watcher": watcher,
        "results": results,
    }
    if args.json:
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print_machine(document["machine"])
        print_table(results, args.repeat, args.old_repeat)
    failed = any(not c["ok"] for r in results for c in r["contenders"].values())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
