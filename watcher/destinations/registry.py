"""Which destinations a configuration turns on, and opening one by name (`--from NAME`)."""

from __future__ import annotations

import threading

from watcher.config.settings import Config, ConfigError
from watcher.destinations.base import Destination

#: names accepted by `--from` besides the local store itself
KNOWN = ("drive",)


def enabled_destinations(cfg: Config, *, stop: threading.Event | None = None
                         ) -> list[Destination]:
    """The destinations every new snapshot is copied to, in the order they are tried.

    Building them touches neither the network nor the credential files, so a broken
    credential shows up as a failed copy (with its advice), never as a failed run.
    """
    found: list[Destination] = []
    if cfg.drive.enabled:
        found.append(_drive(cfg, stop))
    return found


def enabled_names(cfg: Config) -> list[str]:
    """The names of the destinations :func:`enabled_destinations` builds, without building
    them: what the catalog's copies are queued under."""
    return ["drive"] if cfg.drive.enabled else []


def open_destination(cfg: Config, name: str, *, stop: threading.Event | None = None
                     ) -> Destination:
    """The destination called ``name``, for reading (`list`/`verify`/`restore --from`).

    It need not be enabled (a new machine restoring from Drive may have uploads switched
    off), but it must be configured. Raises :class:`ConfigError` with one line otherwise.
    """
    if name == "drive":
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
        return _drive(cfg, stop)
    raise ConfigError(f"unknown destination '{name}'; expected local or "
                      f"{' or '.join(KNOWN)}")


def _drive(cfg: Config, stop: threading.Event | None) -> Destination:
    from watcher.destinations.gdrive.destination import GoogleDriveDestination

    return GoogleDriveDestination(cfg.drive, stop=stop)
