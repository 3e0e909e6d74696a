"""Opening a tree member only if it is still the file the walk saw.

The tree belongs to the app, which keeps changing it while a snapshot reads it; whoever can
write there can also swap a file or a folder for a link to something outside the root, or
for a FIFO, between the walk and the read. Every member is therefore opened through
:func:`open_member`. Standard library only: the tree packer's process
(watcher/snapshot/packer.py) imports it, and starts in a few tens of milliseconds.
"""

from __future__ import annotations

import errno
import os
import stat


class MemberChanged(OSError):
    """A tree member is no longer what the walk saw: now a link, a FIFO, another file..."""

    def __init__(self, path: str, now: str) -> None:
        super().__init__(f"{path} became {now} after the tree was listed")
        self.path = path
        self.now = now


O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOCTTY", 0)
               | O_NOFOLLOW | _O_NONBLOCK)
#: what open() says when O_NOFOLLOW met a link (ELOOP; EMLINK on FreeBSD), a socket (ENXIO),
#: or O_DIRECTORY met something else (ENOTDIR): in the tree, each means "swapped since the walk"
_SWAPPED_ERRNOS = {errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.ENOTDIR}

_KIND_NAMES = {stat.S_IFREG: "file", stat.S_IFDIR: "folder", stat.S_IFLNK: "link",
               stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "device",
               stat.S_IFBLK: "device"}


def walked_stat(mode: int, ino: int, dev: int, size: int) -> os.stat_result:
    """The walk's view of a member rebuilt from a record (a list, another process): its
    type, identity and size, all :func:`open_member` compares; the rest is zero."""
    return os.stat_result((mode, ino, dev, 0, 0, 0, size, 0, 0, 0))


def open_member(path: str, walked: os.stat_result) -> tuple[int, os.stat_result]:
    """Open the tree member at ``path`` for reading, only if it is still what the walk saw.

    ``walked`` is the walk's ``lstat`` of it. The open never follows a link in place of the
    member (O_NOFOLLOW) and never waits on a FIFO or device swapped in (O_NONBLOCK); the
    opened file must then have the walked type and be the walked file (device and inode),
    which also catches a folder on the way there that became a link to somewhere else.
    Returns the descriptor (blocking again, for plain reads) and its ``fstat``. Raises
    :class:`MemberChanged` when the member changed, ``FileNotFoundError`` when it vanished,
    and ``OSError`` when it cannot be read.
    """
    want = stat.S_IFMT(walked.st_mode)
    flags = _READ_FLAGS | (O_DIRECTORY if want == stat.S_IFDIR else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno in _SWAPPED_ERRNOS:
            raise _changed(path, want, None) from None
        raise
    try:
        st = os.fstat(fd)
        # Windows' walk reports no inode (0); there the type check is what is left
        same = walked.st_ino == 0 or (st.st_dev, st.st_ino) == (walked.st_dev,
                                                                 walked.st_ino)
        if stat.S_IFMT(st.st_mode) != want or not same:
            raise _changed(path, want, st)
        if _O_NONBLOCK and want == stat.S_IFREG:
            # a regular file ignores O_NONBLOCK, except on the odd filesystem (FUSE) that
            # would then answer a read with "try again"
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _changed(path: str, want: int, opened: os.stat_result | None) -> MemberChanged:
    """The error for a member that is no longer the walked one, saying what it is now."""
    now = opened
    if now is None or stat.S_IFMT(now.st_mode) == want:
        try:
            now = os.lstat(path)
        except OSError:
            now = None
    if now is None:
        return MemberChanged(path, "something else")
    kind = stat.S_IFMT(now.st_mode)
    if kind == want:
        return MemberChanged(path, f"another {_KIND_NAMES.get(kind, 'file')}")
    return MemberChanged(path, f"a {_KIND_NAMES[kind]}" if kind in _KIND_NAMES
                         else "something else")
