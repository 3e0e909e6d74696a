"""`siip-watcher drive login`: sign in, then make sure uploads have a folder they can reach.

With the ``drive.file`` scope the app sees only what it created, so a folder made by hand
in the Drive web UI is invisible to it. After signing in: with no ``drive.folder_id`` this
creates a folder and prints the line to put in the configuration; with one, it checks the
folder is reachable and explains what to do if it is not.
"""

from __future__ import annotations

from collections.abc import Callable

from watcher.config.settings import Config
from watcher.destinations.base import DestinationError
from watcher.destinations.gdrive.auth import login
from watcher.destinations.gdrive.destination import GoogleDriveDestination


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
                name = dest.check_folder()
            except DestinationError as exc:
                raise DestinationError(
                    f"{exc}. With the drive.file scope siip-watcher only sees folders it "
                    f"created: remove drive.folder_id and run `siip-watcher drive login` "
                    f"again to create one", retryable=False) from None
            say(f"Uploads go to the Drive folder '{name}' ({dest.parent}).")
            return dest.parent
        title = f"siip-watcher backups ({cfg.name})"
        folder_id = dest.create_folder(title)
        say(f"Created the Drive folder '{title}'. Put this line under [drive] in the "
            f"configuration, then set enabled = true:")
        say("")
        say(f'    folder_id = "{folder_id}"')
        return folder_id
