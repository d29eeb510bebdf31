"""The byte budget for full-size decoded frames: how much decoding may hold at once.

Most formats decode whole before `teddywatch.shrink` can reduce them, so the big cost of a batch
is the full-size frames being decoded at the same moment, not the small images it keeps. Every
decode asks `BUDGET` for its frame's bytes (`shrink.frame_bytes`) before it decodes and gives them
back once the frame is gone. A decode that does not fit waits for the others to finish; one frame
larger than the whole budget is decoded alone (a 90 Mpx RGBA image needs 360 MB, and refusing it
would make the limit depend on the mode), so the frames held at once never exceed the larger of
the budget and the one largest frame.

DECODE_BUDGET_MB = 160: one 6000×6000 RGBA PNG (144 MB) fits, and two 20-megapixel photos that
are not JPEGs (80 MB each: Pillow keeps RGB at 4 bytes a pixel) still decode side by side on the
two decode threads; HEIC phone photos (12 Mpx, 48 MB) always do. What a batch keeps afterwards is
small by construction (`shrink`: a 24 Mpx photo becomes 750×500, 1.5 MB). With Python,
onnxruntime and the model (about 225 MB at the peak of a burst of small files) that keeps
`teddywatch classify` under 400 MB (bench/hostile_memory.py; 192 MB with 8 MB strips measured
423 MB).
"""

from __future__ import annotations

import threading
from typing import Protocol

MB = 1024 * 1024
DECODE_BUDGET_MB = 160


class Budget(Protocol):
    """What decoding asks before it holds a full-size frame (`PixelBudget`, or in a decoder
    process its proxy, which asks the app's `BUDGET` over the process's socket)."""

    def acquire(self, nbytes: int) -> int: ...

    def release(self, granted: int) -> None: ...


class PixelBudget:
    """A counting semaphore in bytes; `acquire(n)` blocks while others hold too much."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.peak = 0  # the most held at once (for tests and the benchmark)
        self._changed = threading.Condition()

    def acquire(self, nbytes: int) -> int:
        """Wait until `nbytes` (at most the whole budget) fit; the bytes granted, for release."""
        need = max(0, min(nbytes, self.capacity))
        with self._changed:
            while not self._fits(need):
                self._changed.wait()
            self._take(need)
        return need

    def try_acquire(self, nbytes: int) -> int | None:
        """`acquire` without waiting: the bytes granted, or None when they do not fit now."""
        need = max(0, min(nbytes, self.capacity))
        with self._changed:
            if not self._fits(need):
                return None
            self._take(need)
        return need

    def _fits(self, need: int) -> bool:
        return not self.used or self.used + need <= self.capacity

    def _take(self, need: int) -> None:
        self.used += need
        self.peak = max(self.peak, self.used)

    def release(self, granted: int) -> None:
        if not granted:
            return
        with self._changed:
            self.used -= granted
            self._changed.notify_all()


BUDGET = PixelBudget(DECODE_BUDGET_MB * MB)
