"""The `siip-watcher` command line: parsing, printing and exit codes only; the work is in
:mod:`watcher.actions` and the modules it names.

Exit codes (README.md, "Exit codes"): 0 all done; 1 the run failed; 2 usage or configuration error;
3 a snapshot was stored locally but a destination failed (it stays queued).
"""

# Each command imports what it runs, when it runs (the imports marked noqa: PLC0415): importing
# every command's modules up front more than doubles start-up (0.12 -> 0.30 s), paid by every
# `status` and by each CLI subprocess of the test suite.

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcher import __version__
from watcher.actions import Tick, UsageError
from watcher.backup.report import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, describe_kind, printable
from watcher.config.settings import Config, ConfigError, config_file_from, load, to_toml
from watcher.destinations.base import DestinationError, SetupError
from watcher.destinations.registry import (
    KINDS,
    NAMES,
    DestinationKind,
    inspect_enabled,
    unencrypted_warnings,
)
from watcher.jsontext import json_text

if TYPE_CHECKING:
    from watcher.actions.unseal import Identity

log = logging.getLogger("watcher")

#: problems `verify` prints for one snapshot before it says how many more there are
SHOWN_PROBLEMS = 20


# --- helpers --------------------------------------------------------------------------------


def _load(args: argparse.Namespace, *, check_paths: bool = True,
          check_reachable: bool = False) -> Config:
    """The configuration; ``check_paths=False`` for commands that must work when the source
    folder is gone (listing, verifying, restoring and pruning on a new machine);
    ``check_reachable`` for `config check` (see :func:`watcher.config.settings.load`)."""
    return load(config_file_from(args.config), check_paths=check_paths,
                check_reachable=check_reachable)


def _print_json(data: Any) -> None:
    sys.stdout.write(json_text(data))


@contextmanager
def _progress(enabled: bool, desc: str) -> Iterator[tuple[Tick | None, Tick | None]]:
    """A byte progress bar on a terminal; nothing (log lines only) otherwise."""
    if not enabled or not sys.stderr.isatty():
        yield None, None
        return
    from tqdm import tqdm  # noqa: PLC0415 - start-up time, see the top

    bar = tqdm(total=0, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False)

    def total(n: int) -> None:
        bar.total = n
        bar.refresh()

    try:
        yield bar.update, total
    finally:
        bar.close()


def _setup_logging(args: argparse.Namespace, cfg: Config | None = None) -> None:
    try:
        from watcher.logsetup import setup_logging  # noqa: PLC0415 - start-up time, see the top
    except ImportError:  # pragma: no cover - logsetup ships with the package
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        return
    setup_logging(cfg, verbose=getattr(args, "verbose", False))


# --- commands -------------------------------------------------------------------------------


def cmd_once(args: argparse.Namespace) -> int:
    from watcher.backup.run import RunBusy, run_backup  # noqa: PLC0415 - start-up time, see the top

    cfg = _load(args)
    _setup_logging(args, cfg)
    with _progress(not args.json, "snapshot") as (update, total):
        try:
            report = run_backup(cfg, trigger="manual", upload=not args.no_upload,
                                email=not args.no_email, progress=update, on_total=total,
                                full=args.full)
        except RunBusy as exc:
            log.error("%s", exc)
            return EXIT_RUN_FAILED
    if args.json:
        _print_json(report.to_dict())
    else:
        _print_report(report)
    return report.exit_code


def _print_report(report: Any) -> None:
    from watcher.backup.run import seconds  # noqa: PLC0415 - start-up time, see the top

    out = sys.stdout
    if report.snapshot is None:
        out.write(f"Backup FAILED: {report.errors[0].message if report.errors else 'unknown'}\n")
        for e in report.errors:
            if e.hint:
                out.write(f"  what to do: {e.hint}\n")
        return
    s = report.snapshot
    out.write(f"Snapshot {s.id} stored ({report.status}).\n")
    out.write(f"  archive : {s.file}\n")
    out.write(f"  kind    : {describe_kind(s)}\n")
    packed = (f"the rest is in {s.base}" if s.is_delta else f"ratio {s.ratio:.2f}")
    out.write(f"  size    : {s.size:,} bytes from {s.bytes_in:,} ({packed}), "
              f"{s.files:,} files, {seconds(report.duration)}\n")
    for db in s.databases:
        found = ", found automatically: not in source.databases" if db.discovered else ""
        out.write(f"  database: {printable(db.path)} ({db.pages:,} pages{found}) "
                  f"{db.check_pragma} {db.check}\n")
    for d in report.destinations:
        line = f"  {d.name:8}: {d.state}"
        if d.link:
            line += f" {d.link}"
        if d.error:
            line += f" ({d.error})"
        out.write(line + "\n")
    for w in report.warnings:
        out.write(f"  warning : {w.message}\n")
    if report.pruned:
        out.write(f"  pruned  : {', '.join(report.pruned)}\n")


def _bars(desc: str) -> AbstractContextManager[tuple[Tick | None, Tick | None]]:
    """The progress bars of `verify` and `restore`: on a terminal, whatever the output."""
    return _progress(True, desc)


def _identity(args: argparse.Namespace) -> Identity | None:
    """The identity named by ``--identity`` or SIIP_WATCHER_IDENTITY_FILE, loaded (None when
    neither is set); an unusable one is a usage error. Its text is never printed."""
    from watcher.actions.unseal import load_identity  # noqa: PLC0415 - start-up time, see the top
    from watcher.encryption.keys import identity_file  # noqa: PLC0415 - start-up time, see the top

    return load_identity(identity_file(args.identity))


def _stored_at(row: Any) -> str:
    where = ", ".join(row.stored_at)
    if getattr(row, "encrypted", False):
        return f"{where} (encrypted)"
    encrypted_for = getattr(row, "encrypted_for", None)
    if encrypted_for is None:
        return where
    opens = {True: ", your identity opens it", False: ", NOT for your identity"}
    return f"{where} (encrypted{opens.get(row.opens, '')})"


def cmd_list(args: argparse.Namespace) -> int:
    from watcher.actions.list import list_snapshots  # noqa: PLC0415 - start-up time, see the top

    cfg = _load(args, check_paths=False)
    _setup_logging(args, cfg)
    rows = list_snapshots(cfg, args.source, identity=_identity(args))
    if args.json:
        _print_json([r.to_dict() for r in rows])
        return EXIT_OK
    if not rows:
        print(f"no snapshots ({args.source})")
        return EXIT_OK
    print(f"{'ID':<32} {'CREATED (UTC)':<20} {'SIZE':>14}  {'KIND':<5}  {'BASE':<32}  STORED AT")
    for r in rows:
        created = (r.created_at.isoformat() if r.created_at else "")[:19].replace("T", " ")
        base = r.base or ("?" if r.kind == "delta" else "-")
        print(f"{r.id:<32} {created:<20} {r.size:>14,}  {r.kind:<5}  {base:<32}  "
              f"{_stored_at(r)}")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from watcher.actions.verify import verify_snapshots  # noqa: PLC0415 - start-up time, see the top

    cfg = _load(args, check_paths=False)
    _setup_logging(args, cfg)
    failed = 0
    for one in verify_snapshots(cfg, args.source, args.id, every=args.all, bars=_bars,
                                identity=_identity(args)):
        result = one.result
        if result.ok:
            dbs = ", ".join(f"{d['path']} {d['check']}" for d in result.databases) or "none"
            print(f"{one.snapshot_id}: OK ({result.members:,} members; databases: {dbs})")
        else:
            failed += 1
            print(f"{one.snapshot_id}: FAILED")
            for p in result.problems[:SHOWN_PROBLEMS]:
                print(f"  - {p}")
            if len(result.problems) > SHOWN_PROBLEMS:
                print(f"  ... and {len(result.problems) - SHOWN_PROBLEMS} more")
    return EXIT_RUN_FAILED if failed else EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from watcher.actions.restore import restore_snapshot  # noqa: PLC0415 - start-up time, see the top

    cfg = _load(args, check_paths=False)
    _setup_logging(args, cfg)
    done = restore_snapshot(cfg, args.source, args.id, Path(args.to).expanduser(),
                            only=args.only or [], force=args.force, bars=_bars,
                            identity=_identity(args))
    result = done.result
    print(f"Restored {done.snapshot_id} into {result.target}: {result.files:,} files, "
          f"{result.bytes:,} bytes.")
    for db in result.databases:
        print(f"  database: {db}")
    if args.only and result.files == 0:
        print("  (nothing matched --only)")
        return EXIT_RUN_FAILED
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from watcher.actions.prune import prune_now  # noqa: PLC0415 - start-up time, see the top

    cfg = _load(args, check_paths=False)
    _setup_logging(args, cfg)
    result = prune_now(cfg, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for place, ids in result.deleted.items():
        print(f"{place}: {verb} {len(ids)}, keeping {len(result.kept.get(place, []))}")
        for sid in ids:
            print(f"  - {sid}")
    for sid in result.protected:
        print(f"local: kept {sid}: not yet at every destination")
    for p in result.problems:
        print(f"warning: {p.message}")
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    from watcher.actions.ack import acknowledge  # noqa: PLC0415 - start-up time, see the top

    cfg = _load(args, check_paths=False)
    _setup_logging(args, cfg)
    hold = acknowledge(cfg)
    if hold is None:
        print("No data-loss alert to acknowledge; pruning runs normally.")
        return EXIT_OK
    print(f"Acknowledged the data-loss alert raised {hold.raised_at:%Y-%m-%d %H:%M} UTC:")
    for reason in hold.reasons:
        print(f"  - {reason}")
    print("Old snapshots are pruned again from the next run on.")
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    if args.config_cmd == "check":
        cfg = _load(args, check_reachable=True)
        sys.stdout.write(f"# {cfg.path}: OK\n" + to_toml(cfg))
        # what the destinations themselves say: advice, not an error (a run copes with it)
        for line in [*unencrypted_warnings(cfg), *inspect_enabled(cfg)]:
            print(f"siip-watcher: config check: {line}", file=sys.stderr)
        return EXIT_OK
    if args.config_cmd == "init":
        from watcher.config.starter import starter_toml  # noqa: PLC0415 - start-up time, see the top

        text = starter_toml()
        if args.output:
            out = Path(args.output)
            if out.exists() and not args.force:
                raise UsageError(f"{out} exists; add --force to overwrite it")
            out.write_text(text, encoding="utf-8")
            print(f"wrote {out}; edit source.root and local.dir, then run "
                  f"`siip-watcher -c {out} config check`", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return EXIT_OK
    if args.config_cmd == "import":
        from watcher.config.import_old import import_old_config  # noqa: PLC0415 - start-up time, see the top

        sys.stdout.write(import_old_config(Path(args.old_config)))
        return EXIT_OK
    raise UsageError("config needs one of: check, init, import")


def cmd_email(args: argparse.Namespace) -> int:
    from watcher.notify.email import EmailError, send_test  # noqa: PLC0415 - start-up time, see the top

    if args.email_cmd != "test":
        raise UsageError("email needs: test")
    # the source paths do not matter for a test message: it can be checked before they exist
    cfg = _load(args, check_paths=False)
    _setup_logging(args, cfg)
    try:
        send_test(cfg)
    except EmailError as exc:
        print(f"siip-watcher: test email not sent: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    print(f"test email sent to {', '.join(cfg.email.to)} via "
          f"{cfg.email.smtp_host}:{cfg.email.smtp_port}")
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    from watcher.encryption.keys import KeyFileError, write_new_identity  # noqa: PLC0415 - start-up time, see the top

    if args.key_cmd != "generate":
        raise UsageError("key needs: generate")
    out = Path(args.output).expanduser()
    try:
        public = write_new_identity(out)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    print(public)
    print(f"wrote the identity (private key) to {out}, mode 0600; put the public key above "
          f"in [encryption] recipients on the server and keep {out} off it, in two safe "
          f"places (docs/encryption.md)", file=sys.stderr)
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    """`siip-watcher KIND ACTION`: a setup step that a destination kind registers."""
    kind: DestinationKind = args.setup_kind
    command = next((c for c in kind.commands if c.action == args.setup_action), None)
    if command is None:
        raise UsageError(f"{kind.name} needs: {'|'.join(c.action for c in kind.commands)}")
    cfg = load(config_file_from(args.config), check_paths=False, setting_up=(kind.section,))
    _setup_logging(args, cfg)
    try:
        command.run(cfg, args)
    except SetupError as exc:
        print(f"siip-watcher: {kind.name} {command.action}: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from watcher.demo import run_demo  # noqa: PLC0415 - start-up time, see the top

    _setup_logging(args)
    return run_demo(Path(args.dir))


def cmd_start(args: argparse.Namespace) -> int:
    """The service, in the foreground until SIGTERM/SIGINT (systemd, NSSM)."""
    from watcher.service.daemon import serve  # noqa: PLC0415 - start-up time, see the top

    cfg = _load(args)
    _setup_logging(args, cfg)
    return serve(cfg)


def cmd_status(args: argparse.Namespace) -> int:
    from watcher.service.status import StatusError, collect_status, format_status  # noqa: PLC0415 - start-up time, see the top

    # status must answer even when the source folder is missing (that is worth seeing)
    cfg = _load(args, check_paths=False)
    try:
        data = collect_status(cfg)
    except StatusError as exc:
        print(f"siip-watcher: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    sys.stdout.write(json_text(data) if args.json else format_status(data))
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------


# one statement per option: it reads as the command reference
def build_parser() -> argparse.ArgumentParser:  # noqa: PLR0915
    """The argument parser; subcommands register their handler as ``func``."""
    p = argparse.ArgumentParser(
        prog="siip-watcher",
        description="Consistent, verified backups of a SQLite-backed web application.")
    p.add_argument("-c", "--config", metavar="FILE",
                   help="configuration file (default: $SIIP_WATCHER_CONFIG, else "
                        "./siip-watcher.toml)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--version", action="version", version=f"siip-watcher {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("once", help="one full run now")
    s.add_argument("--full", action="store_true",
                   help="a full archive even when a delta is due (see snapshot.full_every_days)")
    s.add_argument("--no-upload", action="store_true", help="store locally only (queued)")
    s.add_argument("--no-email", action="store_true", help="send no email for this run")
    s.add_argument("--json", action="store_true", help="print the run report as JSON")
    s.set_defaults(func=cmd_once)

    s = sub.add_parser("list", help="snapshots, newest first")
    s.add_argument("--from", dest="source", default="local", choices=["local", *NAMES])
    s.add_argument("--json", action="store_true")
    _add_identity(s)
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("verify", help="check a snapshot end to end")
    s.add_argument("id", nargs="?", help="snapshot id or 'latest' (default)")
    s.add_argument("--all", action="store_true", help="verify every snapshot")
    s.add_argument("--from", dest="source", default="local", choices=["local", *NAMES])
    _add_identity(s)
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("restore", help="restore a snapshot into a folder")
    s.add_argument("id", help="snapshot id or 'latest'")
    s.add_argument("--to", required=True, metavar="DIR", help="folder to restore into")
    s.add_argument("--from", dest="source", default="local", choices=["local", *NAMES])
    s.add_argument("--only", action="append", metavar="GLOB",
                   help="restore only matching paths (repeatable)")
    s.add_argument("--force", action="store_true", help="restore into a non-empty folder")
    _add_identity(s)
    s.set_defaults(func=cmd_restore)

    s = sub.add_parser("prune", help="apply retention locally and at each destination")
    s.add_argument("--dry-run", action="store_true", help="show what would be deleted")
    s.set_defaults(func=cmd_prune)

    s = sub.add_parser("ack", help="acknowledge a data-loss alert, so pruning resumes")
    s.set_defaults(func=cmd_ack)

    s = sub.add_parser("config", help="check, init or import the configuration")
    csub = s.add_subparsers(dest="config_cmd", metavar="check|init|import")
    csub.add_parser("check", help="validate and print the effective config (redacted)")
    ci = csub.add_parser("init", help="write a commented starter file")
    ci.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    ci.add_argument("--force", action="store_true")
    cim = csub.add_parser("import", help="translate an old config.py's BACKUP_* settings")
    cim.add_argument("old_config", metavar="OLD_config.py")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("email", help="email reports")
    esub = s.add_subparsers(dest="email_cmd", metavar="test")
    esub.add_parser("test", help="send a test email with the current settings")
    s.set_defaults(func=cmd_email)

    s = sub.add_parser("key", help="age keys for encrypted off-site copies")
    ksub = s.add_subparsers(dest="key_cmd", metavar="generate")
    kg = ksub.add_parser("generate", help="write a new identity (private key, mode 0600) and "
                                          "print its public key")
    kg.add_argument("-o", "--output", required=True, metavar="FILE",
                    help="the identity file to create (never overwritten)")
    s.set_defaults(func=cmd_key)

    for kind in KINDS:
        if kind.commands:
            _add_setup_commands(sub, kind)

    s = sub.add_parser("demo", help="back up a generated demo SIIP folder (no setup needed)")
    s.add_argument("--dir", default="demo", help="where the demo lives (default ./demo)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("start", help="run as a service in the foreground until SIGTERM/SIGINT")
    s.set_defaults(func=cmd_start)

    s = sub.add_parser("status", help="service running?, last run, next run, pending changes "
                                      "and uploads")
    s.add_argument("--json", action="store_true", help="print one JSON document")
    s.set_defaults(func=cmd_status)

    return p


def _add_identity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identity", metavar="FILE",
                        help="age identity (private key) that opens encrypted copies "
                             "(default: $SIIP_WATCHER_IDENTITY_FILE)")


def _add_setup_commands(sub: Any, kind: DestinationKind) -> None:
    """`siip-watcher KIND ACTION ...` for each setup command a destination kind registers."""
    s = sub.add_parser(kind.name, help=kind.title)
    ksub = s.add_subparsers(dest="setup_action", metavar="|".join(c.action for c in kind.commands))
    for command in kind.commands:
        command.add_arguments(ksub.add_parser(command.action, help=command.help))
    s.set_defaults(func=cmd_setup, setup_kind=kind)


# one return per exit path, each with its own exit code
def main(argv: Sequence[str] | None = None) -> int:  # noqa: PLR0911
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"siip-watcher: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"siip-watcher: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("siip-watcher: interrupted", file=sys.stderr)
        return EXIT_RUN_FAILED
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return _report_failure(exc)


def _report_failure(exc: Exception) -> int:
    from watcher.archive.read import ArchiveError  # noqa: PLC0415 - start-up time, see the top
    from watcher.encryption.stream import DecryptFailed  # noqa: PLC0415 - start-up time, see the top
    from watcher.state.lock import LockBusy  # noqa: PLC0415 - start-up time, see the top
    from watcher.state.store import StoreError  # noqa: PLC0415 - start-up time, see the top

    if isinstance(exc, ArchiveError | DestinationError | DecryptFailed | LockBusy | StoreError):
        print(f"siip-watcher: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    log.exception("unexpected error")
    print(f"siip-watcher: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
    return EXIT_RUN_FAILED
