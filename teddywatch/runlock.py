"""One service per results log: a lock file next to the log, held while the service runs.

The lock is an OS file lock (flock on Linux and macOS, msvcrt on Windows) on
`results.csv.lock`, which holds the owner's pid. The OS drops the lock when its process ends,
however it ends, so a lock file left by a crash is simply taken over by the next start (and
said so in the log). `teddywatch classify` never writes the log and takes no lock.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from teddywatch.ledger import LedgerError

log = logging.getLogger(__name__)


class AlreadyRunning(LedgerError):
    """Another teddywatch service holds this results log."""

    def __init__(self, pid: str, log_path: Path) -> None:
        super().__init__(f"teddywatch is already running (pid {pid or 'unknown'}) with the "
                         f"results log {log_path}; quit it first, or give this one another "
                         "[log] path")
        self.pid = pid


def lock_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".lock")


class RunLock:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.path = lock_path(log_path)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Hold the lock, or raise AlreadyRunning (LedgerError if the lock file cannot be made)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(f"{self.path}: cannot create the lock file: "
                              f"{exc.strerror or exc}") from None
        if not _try_lock(fd):
            pid = _read(fd)
            os.close(fd)
            raise AlreadyRunning(pid, self.log_path)
        stale = _read(fd)
        if stale and stale != str(os.getpid()):
            log.info("%s: taking over the lock left by pid %s, which is gone", self.path, stale)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no pid left behind to mislead anyone
        except OSError:
            pass
        os.close(self._fd)  # closing drops the lock
        self._fd = None


def _read(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 64).decode("ascii", "replace").strip()
    except OSError:
        return ""


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True
