"""One decoder process, seen from the app: start it, send it files, read what it answers.

`DecoderProcess` runs `teddywatch.decodechild.main` in a child process (`python -c ...`; the
frozen app with `--decoder-process`, see packaging/teddywatch_main.py) with one end of a socket
pair and a shared file for the pixels (a memfd on Linux). It only moves messages and pixels;
`teddywatch.dispatch` decides what to send, times each file and kills a process that runs past
the limit, and `teddywatch.decoders` keeps a pool of them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path

from PIL import Image

from teddywatch import imaging
from teddywatch.pixelbudget import MB

#: Frames up to this many bytes (a photo in JPEG draft mode, 1 Mpx) are decoded without asking
#: the app's `pixelbudget.BUDGET`; a larger frame waits for its bytes.
SMALL_FRAME = 4 * MB
#: Pixels of up to this many bytes (a camera photo at 1/8) are read into a buffer kept from one
#: image to the next.
KEPT_BUFFER = 2 * MB
#: The frozen app's first argument that makes it a decoder process (packaging/teddywatch_main.py).
FROZEN_FLAG = "--decoder-process"


class DecoderProcess:
    """One child process running `decodechild.main`, and the app's end of its socket."""

    def __init__(self, idle_seconds: float, generation: int = 0) -> None:
        self.generation = generation
        self.ready = False  # it said so, after its imports
        ours, theirs = socket.socketpair()
        try:
            self.pixels = _shared_file()
            try:
                fds = (theirs.fileno(), self.pixels)
                # Its own process group: Ctrl-C in a terminal reaches the app only, which ends
                # it. The same session: Linux's scheduler (autogroups) then shares the CPU
                # between it and the model as between threads (a new session would give each
                # decoder as much CPU as the whole app).
                self.proc = subprocess.Popen(
                    _command(*fds, idle_seconds), pass_fds=fds, env=_child_env(),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, process_group=0)
            except BaseException:
                os.close(self.pixels)
                raise
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self._buffer = bytearray()

    @property
    def alive(self) -> bool:
        return not self.conn.closed and self.proc.poll() is None

    def send(self, path: str, min_size: int) -> None:
        """Ask for one file (it queues behind the ones it has); raises OSError if it is gone."""
        self.conn.send(("decode", path, min_size, imaging.max_pixels(), _log_levels(),
                        SMALL_FRAME))

    def grant(self, nbytes: int) -> None:
        self.conn.send(("granted", nbytes))

    def receive(self) -> tuple:
        """The next message (raises EOFError or OSError when the process is gone)."""
        return self.conn.recv()

    def image(self, mode: str, size: tuple[int, int], nbytes: int, at: int) -> Image.Image:
        """The decoded image it wrote to the shared file at `at`, read into a buffer kept for
        the next (a fresh one for each would cost the app a page fault per 4 KB)."""
        if nbytes > KEPT_BUFFER or not hasattr(os, "preadv"):
            return Image.frombytes(mode, size, os.pread(self.pixels, nbytes, at))
        if len(self._buffer) < nbytes:
            self._buffer = bytearray(nbytes)
        view = memoryview(self._buffer)[:nbytes]
        if os.preadv(self.pixels, [view], at) != nbytes:
            raise RuntimeError("decoder protocol: fewer pixels than announced")
        return Image.frombytes(mode, size, view)

    def kill(self) -> int:
        """End the process now (it may be stuck in a decode); its exit code."""
        self._close_ours()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:  # stuck in the kernel: it is gone once that ends
            return -signal.SIGKILL

    def close(self) -> None:
        """Let it end on its own (it sees the socket close), or kill it after a second."""
        self._close_ours()
        try:
            self.proc.wait(1)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close_ours(self) -> None:
        if not self.conn.closed:
            self.conn.close()
            os.close(self.pixels)


def ended(code: int | None) -> str:
    """How a process ended, in words: "killed by SIGSEGV", "exit code 1"."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_from_child(name: str, level: int, message: str) -> None:
    """Log a record the decoder process sent, with the app's own handlers."""
    logger = logging.getLogger(name)
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(name, level, "(decoder process)", 0, message, None, None))


def _command(sock: int, pixels: int, idle_seconds: float) -> list[str]:
    args = [str(sock), str(pixels), repr(idle_seconds)]
    if getattr(sys, "frozen", False):  # the frozen app runs decodechild.main for this flag
        return [sys.executable, FROZEN_FLAG, *args]
    root = str(Path(__file__).resolve().parent.parent)
    code = (f"import sys; sys.path.insert(0, {root!r}); "
            "from teddywatch.decodechild import main; sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, *args]


def _shared_file() -> int:
    """A file the decoder writes pixels into and the app reads them from: in memory (memfd) on
    Linux, else an unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("teddywatch-pixels", os.MFD_CLOEXEC)
    with tempfile.TemporaryFile() as handle:
        return os.dup(handle.fileno())


def _child_env() -> dict[str, str]:
    # NumPy's OpenBLAS would start a thread per core (and their buffers) that decoding never uses.
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")


def _log_levels() -> dict[str, int]:
    """The levels the app logs at, so the decoder sends only what would be logged."""
    return {name: logging.getLogger(name or None).getEffectiveLevel()
            for name in ("", "PIL", "teddywatch")}
