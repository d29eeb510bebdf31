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
THRESHOLD = 8 * 1024 * 1024


def release_big_blocks() -> bool:
    """Set glibc's mmap threshold once; True if it was set."""
    done = _mallopt(_M_MMAP_THRESHOLD, THRESHOLD)
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused; freed image memory may stay mapped")
    return done


def keep_freed_heap(nbytes: int = THRESHOLD) -> bool:
    """Keep up to `nbytes` of freed heap instead of handing it back at every free (a decoder
    process, whose heap is little more than the image it decodes, would otherwise fault every
    page of the next image in again: a third of its time on web photos). Blocks over the mmap
    threshold still go back. True if it was set."""
    return _mallopt(_M_TRIM_THRESHOLD, nbytes)


def _mallopt(option: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(option, value) == 1
