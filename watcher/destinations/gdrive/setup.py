"""`siip-watcher drive login`: sign in, then make sure uploads have a folder they can reach;
and what `config check` asks Drive about the settings.

With the ``drive.file`` scope the app sees only what it created, so a folder made by hand
in the Drive web UI is invisible to it. After signing in: with no ``drive.folder_id`` this
creates a folder and prints the line to put in the configuration; with one, it checks the
folder is reachable and explains what to do if it is not. Both it and `config check` say
what to set when the folder lies in a shared drive that ``drive.shared_drive_id`` does not
name (a run finds and uses it, but says so every time).
"""

from __future__ import annotations

from collections.abc import Callable

from watcher.config.settings import Config, DriveConfig
from watcher.destinations.base import DestinationError
from watcher.destinations.gdrive.auth import login
from watcher.destinations.gdrive.destination import GoogleDriveDestination
from watcher.destinations.gdrive.errors import shared_drive_advice
from watcher.retry import RetryPolicy

#: `config check` asks once more after a failure, briefly: it must not hang on a dead link
CHECK_RETRY = RetryPolicy(attempts=2, base=1.0, cap=2.0)
CHECK_TIMEOUT = 20.0


def drive_login(
    cfg: Config,
    *,
    say: Callable[[str], None] = print,
    ask: Callable[[str], str] = input,
    open_browser: bool = False,
    port: int = 0,
) -> str:
    """Run the sign-in and the folder check; return the folder id uploads go to.

    Raises :class:`~watcher.destinations.gdrive.auth.LoginError` or
    :class:`DestinationError` with one line on what to do.
    """
    creds = login(cfg.drive, ask=ask, say=say, open_browser=open_browser, port=port)
    say(f"Signed in. The sign-in is stored in {cfg.drive.token_file} (mode 0600).")
    with GoogleDriveDestination(cfg.drive, credentials=creds) as dest:
        if cfg.drive.shared_drive_id and not cfg.drive.folder_id:
            say(f"Uploads go to the top of the shared drive {cfg.drive.shared_drive_id}.")
            return cfg.drive.shared_drive_id
        if cfg.drive.folder_id:
            try:
                folder = dest.folder_info()
            except DestinationError as exc:
                raise DestinationError(
                    f"{exc}. With the drive.file scope siip-watcher only sees folders it "
                    f"created: remove drive.folder_id and run `siip-watcher drive login` "
                    f"again to create one", retryable=False) from None
            say(f"Uploads go to the Drive folder '{folder.get('name', dest.parent)}' "
                f"({dest.parent}).")
            advice = shared_drive_advice(cfg.drive.folder_id, cfg.drive.shared_drive_id,
                                         str(folder.get("driveId") or ""))
            if advice:
                say(f"Change the configuration: {advice}.")
            return dest.parent
        title = f"siip-watcher backups ({cfg.name})"
        folder_id = dest.create_folder(title)
        say(f"Created the Drive folder '{title}'. Put this line under [drive] in the "
            f"configuration, then set enabled = true:")
        say("")
        say(f'    folder_id = "{folder_id}"')
        return folder_id


def inspect_settings(drive: DriveConfig) -> list[str]:
    """What Drive says about the [drive] settings, for `config check`: that the sign-in works
    and the folder is there, and whether drive.shared_drive_id names the shared drive the
    folder lies in. One line each; a Drive that cannot be asked is one line too."""
    if not drive.folder_id:
        return []          # the shared drive's top level, or not set up yet (`drive login`)
    try:
        with GoogleDriveDestination(drive, timeout=CHECK_TIMEOUT, retry=CHECK_RETRY,
                                    rate_retry=CHECK_RETRY) as dest:
            folder = dest.folder_info()
    except DestinationError as exc:
        return [f"could not check drive.folder_id: {exc}"]
    advice = shared_drive_advice(drive.folder_id, drive.shared_drive_id,
                                 str(folder.get("driveId") or ""))
    return [advice] if advice else []
