"""Sorting: move or copy each classified file into DEST/<label>/ (or unsure/, error/).

The row must never lie about where a file is, and no file may end up unlogged, even if the
process dies between writing the row and moving the file. So sorting is write-ahead:

1. `PlanSink` (before the ledger) picks a free destination name and puts it in the Result;
2. the ledger writes the row, fsynced, saying where the file is going;
3. `MoveSink` (after the ledger) moves it there.

A crash between 2 and 3 leaves a row naming a destination that does not exist yet and the file
untouched at its source; `Sorter.recover` finishes that move on the next start. A move that fails
for another reason (permissions, a full disk) appends a correcting row with no destination, so
the newest row for the file is true.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

from teddywatch.config import SortConfig, WatchConfig, label_folder
from teddywatch.results import ERROR, UNSURE, FileId, Result

log = logging.getLogger(__name__)

TEMP_PREFIX = ".teddywatch-"  # the watcher ignores dot files, so half-copies are never queued


class SortError(Exception):
    """Sorting cannot be set up safely; the message says why."""


class Sorter:
    def __init__(self, config: SortConfig, labels: Sequence[str],
                 watches: Sequence[WatchConfig] = ()) -> None:
        self.config = config
        self.dest = Path(os.path.abspath(config.destination))
        self.copy = config.mode == "copy"
        for folder in sorted(config.folders(labels)):
            _refuse_watched(self.dest / folder, watches)

    # --- step 1 ---------------------------------------------------------------------------

    def plan(self, result: Result) -> Result:
        """Choose where the file goes; no destination when it changed since it was read."""
        if not _is_regular(result.path):
            return result  # a FIFO, device, folder or broken link: its error row says so
        if not _unchanged(result):
            log.info("not sorting %s: it changed or went away after it was classified",
                     result.path)
            return result
        folder = self.dest / self._folder_for(result)
        folder.mkdir(parents=True, exist_ok=True)
        return result.with_destination(str(_free_name(folder, os.path.basename(result.path))))

    def _folder_for(self, result: Result) -> str:
        if result.status == ERROR:
            return self.config.error_folder
        if result.status == UNSURE:
            return self.config.unsure_folder
        return label_folder(result.label)

    # --- step 3 ---------------------------------------------------------------------------

    def move(self, result: Result) -> None:
        """Put the file where its row says. Raises OSError when it cannot."""
        if not result.moved_to:
            return
        if not _unchanged(result):
            raise OSError(errno.EBUSY, "the file changed after it was classified; left in place")
        _transfer(result.path, result.moved_to, keep_source=self.copy)

    # --- after a crash --------------------------------------------------------------------

    def recover(self, recent: Iterable[Result]) -> int:
        """Finish moves whose row was written but whose file was not moved (crash in between)."""
        newest: dict[FileId, Result] = {}
        for result in recent:
            newest[result.file] = result
        finished = 0
        for result in newest.values():
            if result.moved_to and not os.path.lexists(result.moved_to) and _unchanged(result):
                try:
                    Path(result.moved_to).parent.mkdir(parents=True, exist_ok=True)
                    _transfer(result.path, result.moved_to, keep_source=self.copy)
                    finished += 1
                    log.info("finished sorting %s -> %s (interrupted last time)",
                             result.path, result.moved_to)
                except OSError as exc:
                    log.error("cannot finish sorting %s -> %s: %s", result.path,
                              result.moved_to, exc)
        return finished


class PlanSink:
    name = "sort"
    required = False

    def __init__(self, sorter: Sorter) -> None:
        self.sorter = sorter

    def handle(self, result: Result) -> Result:
        return self.sorter.plan(result)

    def close(self) -> None:
        pass


class MoveSink:
    """Runs after the ledger. `correct` appends a row (the ledger's append)."""

    name = "sort-move"
    required = False

    def __init__(self, sorter: Sorter, correct: Callable[[Result], None]) -> None:
        self.sorter = sorter
        self.correct = correct

    def handle(self, result: Result) -> Result:
        try:
            self.sorter.move(result)
        except OSError as exc:
            log.error("cannot sort %s into %s: %s", result.path, result.moved_to,
                      exc.strerror or exc)
            note = f"not sorted: {exc.strerror or exc}"
            fixed = replace(result, moved_to="",
                            detail=f"{result.detail}; {note}" if result.detail else note)
            self.correct(fixed)
            return fixed
        return result

    def close(self) -> None:
        pass


# --- helpers --------------------------------------------------------------------------------

def _unchanged(result: Result) -> bool:
    try:
        st = os.stat(result.path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and (st.st_size, st.st_mtime_ns) == (result.size,
                                                                          result.mtime_ns)


def _is_regular(path: str) -> bool:
    """Only regular files are moved or copied (copying /dev/zero or a FIFO never ends)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _refuse_watched(folder: Path, watches: Sequence[WatchConfig]) -> None:
    """Sorting into a watched folder would classify the sorted file again, forever."""
    for watch in watches:
        root = Path(os.path.abspath(watch.path))
        if folder == root or (watch.recursive and root in folder.parents):
            raise SortError(f"sort folder {folder} is inside the watched folder {root}; "
                            "choose a [sort] destination outside every watched folder")


def _free_name(folder: Path, name: str) -> Path:
    """`name`, or `stem (2).ext`, ... : never an existing file."""
    candidate = folder / name
    stem, ext = os.path.splitext(name)
    n = 1
    while os.path.lexists(candidate):
        n += 1
        candidate = folder / f"{stem} ({n}){ext}"
    return candidate


def _transfer(source: str, target: str, *, keep_source: bool) -> None:
    """Move or copy without ever overwriting `target` and without a half file at `target`."""
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "destination exists", target)
    if not keep_source:
        try:
            os.link(source, target)  # atomic, and fails rather than overwrite
            os.unlink(source)
            return
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise
            # EXDEV (another drive) or no hard links (FAT, some shares): copy below.
    temp = os.path.join(os.path.dirname(target), TEMP_PREFIX + os.path.basename(target))
    try:
        shutil.copy2(source, temp)
        with open(temp, "rb") as f:
            os.fsync(f.fileno())
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "destination exists", target)
        os.replace(temp, target)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    if not keep_source:
        os.unlink(source)
