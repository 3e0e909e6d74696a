"""Every destination kind, registered in one table: :data:`KINDS`.

A kind gives its ``--from`` name (also its name in the catalog, `status` and the reports), the
configuration section whose ``enabled`` turns it on, its builder, and what reading from it
needs configured. A kind that must be set up before it can be enabled adds a command to the
CLI (`siip-watcher drive login`). Nothing outside this package names a kind: the run, the
service and the CLI ask here.

Drive's and rclone's builders import their modules only when called, so a configuration
without Drive never loads the Google client libraries, and every command starts without
rclone's modules (and the lookup of its binary among the installed packages). Building
touches neither the network nor the disk: a destination that cannot be reached shows up as a
failed copy with its advice, never as a failed run.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watcher.config.settings import Config, ConfigError
from watcher.destinations.base import Destination, DestinationError
from watcher.destinations.folder import LocalFolderDestination

Builder = Callable[[Config, threading.Event | None], Destination]


@dataclass(frozen=True)
class SetupCommand:
    """`siip-watcher KIND ACTION`: a step that prepares a kind before it can be enabled.

    The CLI loads the configuration with the kind's section allowed to be incomplete
    (``setting_up`` in :func:`watcher.config.settings.load`), because the step comes before
    the settings it produces are known: `drive login` signs in before there is a folder id.
    ``run`` raises :class:`~watcher.destinations.base.SetupError` with one line on what to do.
    """

    action: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Config, argparse.Namespace], None]


@dataclass(frozen=True)
class DestinationKind:
    """One kind of destination and everything the rest of the program needs to know of it."""

    #: `--from NAME`, and the name its copies have in the catalog, `status` and the reports
    name: str
    #: the configuration section that describes it; its ``enabled`` key turns it on
    section: str
    #: a destination from the configuration (``stop`` ends a transfer early)
    build: Builder
    #: raises :class:`ConfigError` (one line) unless the section says enough to read from it
    check_readable: Callable[[Config], None]
    #: help for its setup commands (`siip-watcher NAME --help`)
    title: str = ""
    commands: tuple[SetupCommand, ...] = ()
    #: `config check`: what asking the destination itself says about its settings (one line
    #: each, none when they match what it finds there; one too when it cannot be asked)
    inspect: Callable[[Config], list[str]] | None = None
    #: its copies leave the local dir, so they are encrypted when ``[encryption]`` names
    #: recipients (docs/encryption.md). True for every kind so far, the [folder] included:
    #: a USB disk or a NAS share is what gets carried off, lost or read by someone else.
    #: False would suit only a kind whose copies never leave the machine's own disks.
    off_site: bool = True

    def enabled(self, cfg: Config) -> bool:
        """Every new snapshot is copied here."""
        return bool(getattr(cfg, self.section).enabled)


# --- Google Drive ---------------------------------------------------------------------------


def _build_drive(cfg: Config, stop: threading.Event | None) -> Destination:
    # the Google client libraries load only when Drive is in use: every command and the
    # service import this registry, most with Drive off
    from watcher.destinations.gdrive.destination import GoogleDriveDestination  # noqa: PLC0415

    return GoogleDriveDestination(cfg.drive, stop=stop)


def _drive_readable(cfg: Config) -> None:
    d = cfg.drive
    if not (d.folder_id or d.shared_drive_id):
        raise ConfigError("--from drive: drive.folder_id (or drive.shared_drive_id) is not "
                          "set; set it to the folder that holds the backups")
    if not d.credentials_file:
        raise ConfigError("--from drive: drive.credentials_file is not set; set it to the "
                          "OAuth client JSON or the service-account key")
    if d.auth == "oauth" and not d.token_file:
        raise ConfigError("--from drive: drive.token_file is not set; set it and run "
                          "`siip-watcher drive login`")


def _drive_inspect(cfg: Config) -> list[str]:
    from watcher.destinations.gdrive.setup import inspect_settings  # noqa: PLC0415 - as above

    return inspect_settings(cfg.drive)


def _drive_login_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--browser", action="store_true",
                        help="also open the address in a browser on this machine")
    parser.add_argument("--port", type=int, default=0,
                        help="loopback port for the sign-in redirect (default: any free port; "
                             "fix it to forward it over SSH)")


def _drive_login(cfg: Config, args: argparse.Namespace) -> None:
    from watcher.destinations.gdrive.setup import drive_login  # noqa: PLC0415 - as above

    drive_login(cfg, open_browser=args.browser, port=args.port)


# --- a folder (a mounted NAS share or a USB disk) -------------------------------------------


def _build_folder(cfg: Config, stop: threading.Event | None) -> Destination:
    # never created here: a missing folder means a share or a disk that is not mounted
    return LocalFolderDestination(Path(cfg.folder.path), name="folder", create=False)


def _folder_readable(cfg: Config) -> None:
    if not cfg.folder.path:
        raise ConfigError("--from folder: folder.path is not set; set it to the folder that "
                          "holds the copies")


# --- any storage rclone reaches (OneDrive, Dropbox, an SFTP NAS, S3) -----------------------


def _build_rclone(cfg: Config, stop: threading.Event | None) -> Destination:
    # as Drive's: loaded only when rclone is in use
    from watcher.destinations.rclone.destination import RcloneDestination  # noqa: PLC0415

    return RcloneDestination(cfg.rclone, stop=stop)


def _rclone_readable(cfg: Config) -> None:
    if not cfg.rclone.remote:
        raise ConfigError("--from rclone: rclone.remote is not set; set it to the rclone "
                          "remote and folder that hold the copies, NAME:PATH")


def _rclone_inspect(cfg: Config) -> list[str]:
    from watcher.destinations.rclone.setup import inspect_settings  # noqa: PLC0415 - as above

    return inspect_settings(cfg.rclone)


def _rclone_check(cfg: Config, args: argparse.Namespace) -> None:
    from watcher.destinations.rclone.setup import rclone_check  # noqa: PLC0415 - as above

    rclone_check(cfg, args)


# --- the table ------------------------------------------------------------------------------

#: every kind, in the order a new snapshot is copied to them
KINDS: tuple[DestinationKind, ...] = (
    DestinationKind(
        name="drive", section="drive", build=_build_drive, check_readable=_drive_readable,
        title="Google Drive sign-in",
        commands=(SetupCommand(
            action="login",
            help="sign in to Google (drive.auth = \"oauth\"); stores the token file (mode 0600)",
            add_arguments=_drive_login_arguments, run=_drive_login),),
        inspect=_drive_inspect),
    DestinationKind(name="folder", section="folder", build=_build_folder,
                    check_readable=_folder_readable),
    DestinationKind(
        name="rclone", section="rclone", build=_build_rclone, check_readable=_rclone_readable,
        title="rclone (OneDrive, Dropbox, an SFTP NAS, S3, ...)",
        commands=(SetupCommand(
            action="check",
            help="list the remote folder and write, read back and delete a probe file",
            add_arguments=lambda parser: None, run=_rclone_check),),
        inspect=_rclone_inspect),
)

#: names accepted by `--from` besides the local store itself
NAMES: tuple[str, ...] = tuple(k.name for k in KINDS)


def enabled_kinds(cfg: Config) -> list[DestinationKind]:
    """The kinds this configuration turns on, in the order they are tried."""
    return [k for k in KINDS if k.enabled(cfg)]


def inspect_enabled(cfg: Config) -> list[str]:
    """`config check`'s look at each enabled destination: lines naming the destination and
    what to change (a Drive folder that lies in a shared drive shared_drive_id does not name,
    say), or that it could not be checked."""
    return [f"{kind.name}: {line}" for kind in enabled_kinds(cfg) if kind.inspect
            for line in kind.inspect(cfg)]


def unencrypted_warnings(cfg: Config) -> list[str]:
    """`config check`'s warning (not an error) for each enabled destination whose copies
    leave the machine in plaintext: ``[encryption]`` names no recipients."""
    enc = cfg.encryption
    if enc.recipients or enc.recipients_file:
        return []
    return [f"{kind.name}: copies are stored unencrypted, readable by anyone with access "
            f"there; set [encryption] recipients (docs/encryption.md)"
            for kind in enabled_kinds(cfg) if kind.off_site]


def enabled_destinations(
    cfg: Config, *, stop: threading.Event | None = None,
    unavailable: Callable[[str, DestinationError], None] | None = None,
) -> list[Destination]:
    """The destinations every new snapshot is copied to, in the order they are tried.

    A destination whose builder raises :class:`DestinationError` is left out and handed to
    ``unavailable(name, error)``; without ``unavailable`` the error propagates.
    """
    found: list[Destination] = []
    for kind in enabled_kinds(cfg):
        try:
            found.append(kind.build(cfg, stop))
        except DestinationError as exc:
            if unavailable is None:
                raise
            unavailable(kind.name, exc)
    return found


def copies_encrypted(name: str) -> bool:
    """Whether copies at the destination called ``name`` are encrypted when ``[encryption]``
    names recipients: its kind's ``off_site``; a name no kind has (a destination built by
    hand) counts as off-site, the safe side."""
    return next((k.off_site for k in KINDS if k.name == name), True)


def enabled_names(cfg: Config) -> list[str]:
    """The names of the destinations :func:`enabled_destinations` builds, without building
    them: what the catalog's copies are queued under."""
    return [k.name for k in enabled_kinds(cfg)]


def open_destination(cfg: Config, name: str, *, stop: threading.Event | None = None
                     ) -> Destination:
    """The destination called ``name``, for reading (`list`/`verify`/`restore --from`).

    It need not be enabled (a new machine restoring from Drive may have uploads switched
    off), but it must be configured. Raises :class:`ConfigError` with one line otherwise.
    """
    for kind in KINDS:
        if kind.name == name:
            kind.check_readable(cfg)
            return kind.build(cfg, stop)
    raise ConfigError(f"unknown destination '{name}'; expected local or "
                      f"{' or '.join(NAMES)}")
