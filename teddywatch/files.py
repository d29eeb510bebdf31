"""What a path names, found without ever blocking: a regular file, or why it is not one.

A watched folder can hold anything: named pipes (FIFOs), sockets, links to devices such as
/dev/zero or /dev/urandom, folders with image names, links whose target is gone or that loop.
Opening a FIFO for reading blocks until a writer comes; reading a device never ends. So a file
is opened with O_NONBLOCK (which never waits, whatever the path names), checked with fstat on
the open descriptor (no race with a rename in between), and only a regular file is read.
Everything else is a `NotAFile` whose message is the one-line reason for its `error` row.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


class NotAFile(Exception):
    """The path names no regular file that can be read; str() is a one-line reason."""


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open `path` for reading if it is a regular file (following links); never blocks."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise NotAFile(why_unreadable(path, exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAFile(_not_regular(path, mode))
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def why_unreadable(path: str | os.PathLike[str], exc: OSError) -> str:
    """A one-line reason for an OSError met opening or stat-ing `path`."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link that loops back on itself"
    if exc.errno == errno.ENOENT:
        try:
            target = os.readlink(path)
        except OSError:
            return "file disappeared before it could be read"
        return f"a symbolic link to a missing file ({target})"
    try:  # a socket cannot be opened at all (ENXIO); say what it is
        mode = os.stat(path).st_mode
    except OSError:
        mode = stat.S_IFREG
    if not stat.S_ISREG(mode):
        return _not_regular(path, mode)
    return f"cannot read the file: {exc.strerror or exc}"


def _not_regular(path: str | os.PathLike[str], mode: int) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    try:
        linked = f" (a link to {os.readlink(path)})" if os.path.islink(path) else ""
    except OSError:
        linked = ""
    return f"{kind}{linked}, not an image file"
