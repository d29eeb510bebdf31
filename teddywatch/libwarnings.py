"""Decoder warnings go to the log file, with the file they came from, not to the terminal.

Pillow warns through Python's `warnings` ("Corrupt EXIF data", "Truncated File Read"), and
libtiff prints its warnings and errors straight to the C stderr ("ZIPDecode: Decoding error at
scanline 72"), naming no file. Both are caught here while `decoding(path)` is active on the
thread and logged at DEBUG (the log file; the terminal too with -v) as "PATH: message".
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys
import threading
import warnings
from pathlib import Path
from typing import Iterator

log = logging.getLogger("teddywatch.decode")

_current = threading.local()
_installed = False
_install_lock = threading.Lock()
_keep: list[object] = []  # the ctypes callbacks must outlive libtiff's use of them


@contextlib.contextmanager
def decoding(path: object) -> Iterator[None]:
    """Attribute library warnings on this thread to `path` until the block ends."""
    install()
    previous = getattr(_current, "path", None)
    _current.path = path
    _current.libtiff_error = ""
    try:
        yield
    finally:
        _current.path = previous


def current_file() -> object | None:
    return getattr(_current, "path", None)


def last_libtiff_error() -> str:
    """libtiff's last error message on this thread while decoding the current file ("" if none)."""
    return getattr(_current, "libtiff_error", "")


def install() -> None:
    """Route Python warnings and libtiff's messages (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        original = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):  # type: ignore
            path = current_file()
            if path is None:
                return original(message, category, filename, lineno, file, line)
            log.debug("%s: %s: %s", path, category.__name__, " ".join(str(message).split()))

        warnings.showwarning = show
        # Every decoder warning, not only the first from each line of Pillow's code.
        warnings.filterwarnings("always", module=r"PIL(\..*)?$", append=True)
        _route_libtiff()


def _route_libtiff() -> None:
    """Replace libtiff's stderr handlers by ones that log (Linux; elsewhere left alone)."""
    lib = _libtiff()
    libc_name = ctypes.util.find_library("c")
    if lib is None or libc_name is None or sys.platform == "win32":
        return
    libc = ctypes.CDLL(libc_name)
    vsnprintf = libc.vsnprintf
    vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
    handler_type = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)

    def make(kind: str):
        def handler(module: bytes | None, fmt: bytes | None, args: int | None) -> None:
            buffer = ctypes.create_string_buffer(512)
            if fmt is not None:
                vsnprintf(buffer, len(buffer), fmt, args)
            text = buffer.value.decode("utf-8", "replace")
            where = module.decode("utf-8", "replace") if module else "libtiff"
            log.debug("%s: libtiff %s: %s: %s", current_file() or "(no file)", kind, where, text)
            if kind == "error":
                _current.libtiff_error = f"{where}: {text}" if module else text
        return handler_type(handler)

    for setter, kind in (("TIFFSetWarningHandler", "warning"), ("TIFFSetErrorHandler", "error")):
        callback = make(kind)
        _keep.append(callback)
        function = getattr(lib, setter)
        function.restype = ctypes.c_void_p
        function.argtypes = [handler_type]
        function(callback)


def _libtiff() -> ctypes.CDLL | None:
    """The libtiff Pillow loaded (the same one: dlopen returns the loaded copy)."""
    try:
        from PIL import _imaging  # noqa: F401 - loads Pillow's libtiff into this process
    except ImportError:
        return None
    maps = Path("/proc/self/maps")
    candidates: list[str] = []
    if maps.exists():
        for line in maps.read_text(errors="replace").splitlines():
            name = line.rsplit("/", 1)[-1] if "/" in line else ""
            if name.startswith(("libtiff-", "libtiff.")) and "/" in line:
                candidates.append(line[line.index("/"):])
    for candidate in candidates:
        try:
            return ctypes.CDLL(candidate)
        except OSError:
            continue
    return None
