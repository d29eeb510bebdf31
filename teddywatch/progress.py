"""The progress bar of `teddywatch classify`: tqdm on stderr, only when stderr is a terminal.

It shows the count, the rate and the time left, is cleared before each batch of rows is printed
(when stdout is the same terminal) and drawn again after, and is wiped when the run ends, so the
rows on stdout never hold a piece of it. tqdm is imported only when a bar is shown.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator


class Progress:
    """`with Progress(total) as bar:` ... `with bar.above(): print rows` ... `bar.advance(n)`."""

    def __init__(self, total: int, desc: str = "classifying") -> None:
        self._bar: Any = None
        if total > 1 and sys.stderr.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # a runtime installed before tqdm was a dependency: no bar
                return
            # leave=False: close() wipes the bar. TQDM_* environment variables still apply
            # (TQDM_MININTERVAL=0 draws every update; the tests use it).
            self._bar = tqdm(total=total, desc=desc, unit="img", file=sys.stderr, leave=False,
                             dynamic_ncols=True)

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def __enter__(self) -> "Progress":
        return self

    @contextmanager
    def above(self) -> Iterator[None]:
        """Lines written to stdout inside this block appear above the bar, never inside it."""
        if self._bar is None or not sys.stdout.isatty():
            yield
            return
        sys.stdout.flush()
        with self._bar.external_write_mode(file=sys.stdout):
            yield
            sys.stdout.flush()

    def advance(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
            sys.stderr.flush()
