"""What `config check` asks rclone, and `siip-watcher rclone check`.

`config check` runs ``rclone listremotes`` with the configured rclone.conf and names a
remote that is not there. `rclone check` goes further: it lists the folder and writes,
reads back and deletes a probe file, so an admin knows before the first backup that the
remote takes copies. Neither prints anything of rclone.conf but the remotes' names.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from watcher.config.settings import Config, RcloneConfig
from watcher.destinations.base import DestinationError, SetupError
from watcher.destinations.rclone.destination import RcloneDestination
from watcher.destinations.rclone.errors import explain, remote_name
from watcher.destinations.rclone.process import Rclone, RcloneFailed, find_binary


def inspect_settings(rc: RcloneConfig) -> list[str]:
    """One line when rclone.remote names a remote the rclone configuration does not hold
    (or rclone cannot be asked); none when it is there."""
    try:
        out = Rclone(find_binary(rc.binary), rc.config_file).run(["listremotes"])
    except DestinationError as exc:
        return [str(exc)]
    except RcloneFailed as exc:
        return [explain(exc.code, exc.lines, remote=rc.remote,
                        doing="list the remotes").message]
    names = [n.rstrip(":") for n in out.split()]
    name = remote_name(rc.remote)
    if name in names:
        return []
    where = rc.config_file or "rclone's default configuration file (`rclone config file` " \
                              "names it)"
    return [f"rclone.remote names the remote '{name}', which is not in {where} (remotes "
            f"there: {', '.join(names) or 'none'}); fix rclone.remote, or add the remote "
            f"with `rclone config` (docs/rclone.md)"]


def rclone_check(cfg: Config, args: argparse.Namespace,
                 say: Callable[[str], None] = print) -> None:
    """`siip-watcher rclone check`: the remote is there, its folder lists, and a probe file
    can be written, read back and deleted. Raises :class:`SetupError` with what failed."""
    rc = cfg.rclone
    if not rc.remote:
        raise SetupError("rclone.remote is not set; set it to NAME:PATH, a remote of your "
                         "rclone.conf and a folder in it (docs/rclone.md)")
    for problem in inspect_settings(rc):
        raise SetupError(problem)
    with RcloneDestination(rc) as dest:
        try:
            copies = dest.list()
            newest = f", the newest {copies[0].snapshot_id}" if copies else ""
            say(f"{rc.remote}: listed; it holds {len(copies)} snapshot(s){newest}")
            dest.probe()
            say(f"{rc.remote}: wrote, read back and deleted a probe file")
            kind = dest.hash_type()
        except DestinationError as exc:
            raise SetupError(str(exc)) from None
    how = (f"by its {kind} hash" if kind else
           "by its size (this remote reports no hash; a restore checks the sha256)")
    say(f"{rc.remote}: works; each upload is checked {how}"
        + ("" if rc.enabled else "; set rclone.enabled = true to copy every snapshot there"))
