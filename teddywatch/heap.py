"""Give freed image memory back to the system (glibc's malloc would keep it).

Pillow allocates a decoded image in blocks of up to 16 MB. glibc serves allocations that large
with mmap and returns them on free, but after the first such free it raises its threshold (up to
32 MB), so later blocks come from the heaps of whichever thread decoded them, where freed memory
stays mapped: a burst of big images on a few threads then costs hundreds of MB that nothing uses.
A fixed threshold of 8 MB keeps Pillow's blocks (a little under 16 MB each) in their own
mappings, handed back when the image is freed: `teddywatch classify` on bench/hostile_memory.py's
burst peaks at about 370 MB instead of 550. It is not lower because every allocation over it pays
for a fresh mapping: at 1 MB (357 MB) web images and camera photos were 30% slower; at 8 MB they
are as fast as without it (within 3%, bench noise on a shared 2-core machine).
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
THRESHOLD = 8 * 1024 * 1024


def release_big_blocks() -> bool:
    """Set glibc's mmap threshold once; True if it was set."""
    done = _mallopt(_M_MMAP_THRESHOLD, THRESHOLD)
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; freed image memory may stay mapped")
    return done


def keep_freed_heap(nbytes: int = 4 * 1024 * 1024) -> bool:
    """Keep up to `nbytes` of freed heap instead of handing it back at every free (a process
    that makes one image after another would otherwise fault every page of the next image in
    again: a third of a decoder process's time on web photos, half the time the app takes to
    read a decoded image back). Blocks over the mmap threshold still go back. True if set."""
    return _mallopt(_M_TRIM_THRESHOLD, nbytes)


def few_arenas(count: int = 1) -> bool:
    """Let all threads allocate from `count` malloc arenas (glibc gives each thread its own, up
    to 8 per core, and each keeps freed memory in pieces: the app's threads held 30 MB that way
    at the peak of bench/hostile_memory.py's burst). Their allocations are few and large (images,
    arrays), so sharing costs no measurable time. Set it before threads start; True if set."""
    return _mallopt(_M_ARENA_MAX, count)


def trim() -> bool:
    """Hand freed heap memory back to the system now (after a large image, in a decoder)."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    return libc.malloc_trim(0) == 1


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _mallopt(option: int, value: int) -> bool:
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)  # musl and others: no mallopt
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(option, value) == 1
