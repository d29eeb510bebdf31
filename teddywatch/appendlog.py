"""An append-only file written record by record: each record is in the file, fsynced, or not at
all, even when the disk fills up, is remounted read-only, or goes away.

Python's buffered files keep the bytes a failed write could not place and write them again later
(so a row could land twice, or half of one), so this writes with `os.write` on an `O_APPEND`
descriptor. When a write or its fsync fails, whatever part of the record reached the file is cut
off again (`ftruncate` to the last good size); when even that fails (the drive is gone) the
descriptor is dropped and the next append reopens the path, cutting the same file back first.
The caller sees the OSError and may try the same record again later: it is written once.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class AppendFile:
    """Owns one descriptor on `path`; only one thread may call `append` (the ledger's owner).

    `header` is written first whenever the file is (or becomes) empty.
    """

    def __init__(self, path: Path, header: bytes = b"") -> None:
        self.path = path
        self.header = header
        self._fd: int | None = None
        self._size = 0           # bytes known to be good (whole records, fsynced)
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file we write

    def open(self) -> None:
        """Open (creating it, with the header) now; raises OSError."""
        self._open()

    def append(self, data: bytes) -> None:
        """Write `data` whole and fsync it, or raise OSError with the file as it was."""
        if self._fd is None:
            self._open()
        if self._size == 0 and self.header:  # the header's own write failed before
            data = self.header + data
        self._append_raw(data)

    def _append_raw(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            # Another writer (a correction row from `teddywatch correct`, teach/record.py) may
            # have appended whole records since: they are good too, and a cut-back must keep them.
            self._size = max(self._size, os.fstat(self._fd).st_size)
            self._write_all(data)
            os.fsync(self._fd)
        except OSError:
            self._cut_back()
            raise
        self._size += len(data)

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd = None

    # --- internals --------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except FileNotFoundError:
            self._check_same_drive()
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            st = os.fstat(fd)
            identity = (st.st_dev, st.st_ino)
            size = st.st_size
            if identity == self._identity and size > self._size:
                os.ftruncate(fd, self._size)  # a record a failed write left half done
                os.fsync(fd)
                size = self._size
        except OSError:
            os.close(fd)
            raise
        self._fd, self._identity, self._size = fd, identity, size
        if size == 0 and self.header:
            self._append_raw(self.header)  # on failure the file is empty again, or reopened later

    def _check_same_drive(self) -> None:
        """A log that vanished is made again, but not on whatever lies under a removed drive."""
        if self._identity is None:
            return
        parent = os.stat(self.path.parent)  # raises when the folder went with the drive
        if parent.st_dev != self._identity[0]:
            raise OSError(errno.ENODEV, "the drive holding the results log is gone",
                          str(self.path))

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _cut_back(self) -> None:
        """Take a failed record's bytes off again; if that fails too, reopen next time."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            self.close()
