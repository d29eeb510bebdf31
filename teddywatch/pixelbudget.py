"""The byte budget for full-size decoded frames: how much decoding may hold at once.

Most formats decode whole before `teddywatch.shrink` can reduce them, so the big cost of a batch
is the full-size frames being decoded at the same moment, not the small images it keeps. Every
decode asks `BUDGET` for its frame's bytes (`shrink.frame_bytes`) before it decodes and gives them
back once the frame is gone. A decode that does not fit waits for the others to finish; one frame
larger than the whole budget is decoded alone (a 90 Mpx RGBA image needs 360 MB, and refusing it
would make the limit depend on the mode), so the frames held at once never exceed the larger of
the budget and the one largest frame.

DECODE_BUDGET_MB = 112: the frames are decoded in two decoder processes (`teddywatch.decoders`),
each of which takes about 24 MB of its own, so the 160 MB that decoding took in the app's own
process is now 112 MB of frames plus the two processes. Two 12 Mpx HEIC phone photos (48 MB
each) decode side by side; two 20-megapixel photos that are not JPEGs (80 MB each: Pillow keeps
RGB at 4 bytes a pixel) take turns; a 6000×6000 RGBA PNG (144 MB) decodes alone. Each decoder
process holds 4 MB of it for the small frames it decodes without asking (`dispatch`). What a
batch keeps afterwards is small by construction (`shrink`: a 24 Mpx photo becomes 750×500,
1.5 MB). With Python, onnxruntime and the model (about 170-200 MB at the peak of the burst in
bench/hostile_memory.py) that keeps `teddywatch classify` and its decoders under 400 MB
together.
"""

from __future__ import annotations

import threading
from typing import Protocol

MB = 1024 * 1024
DECODE_BUDGET_MB = 112


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

    def try_acquire(self, nbytes: int, giving_back: int = 0) -> int | None:
        """`acquire` without waiting: the bytes granted, or None when they do not fit now. With
        `giving_back`, those bytes (held by the caller) are given back in the same step if the
        new ones fit, and kept if not (so a holder can trade its bytes for more)."""
        need = max(0, min(nbytes, self.capacity))
        with self._changed:
            if not self._fits(need, giving_back):
                return None
            self.used -= giving_back
            self._take(need)
            if giving_back:
                self._changed.notify_all()
        return need

    def _fits(self, need: int, giving_back: int = 0) -> bool:
        used = self.used - giving_back
        return not used or used + need <= self.capacity

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
