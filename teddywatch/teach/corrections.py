"""The user's corrections: labelled examples kept in the data folder, in an append-only journal.

    store = CorrectionStore()                  # <data dir>/corrections/
    store.add("/pics/dog.jpg", "other", was="black", was_confidence=0.91) -> Correction
    store.undo("/pics/dog.jpg") -> Correction | None
    store.active() -> list[Correction]         # the newest correction per file, not undone

Each correction keeps a small copy of the picture (`examples/<key>.jpg`, at most 512 px a side),
so `teddywatch learn` still has it after the original is moved, sorted or deleted. The journal
(`journal.csv`) is appended and fsynced line by line, like the results log; it is replayed on
read, so an undo never rewrites anything. The results log gets a `corrected` row too
(teach/record.py).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from teddywatch import resources
from teddywatch.appendlog import AppendFile
from teddywatch.csvcells import restore, spreadsheet_safe

JOURNAL = "journal.csv"
EXAMPLES = "examples"
EXAMPLE_SIDE = 512
COLUMNS = ("time", "action", "key", "path", "label", "was", "was_confidence")
ADD, UNDO = "add", "undo"


class CorrectionError(Exception):
    """A correction that cannot be made; the message is one line naming the file."""


@dataclass(frozen=True)
class Correction:
    key: str
    path: str
    label: str
    was: str = ""
    was_confidence: float = math.nan
    time: datetime | None = None
    example: Path | None = None


def default_root() -> Path:
    return resources.data_dir() / "corrections"


def key_for(path: str) -> str:
    """One key per file path: correcting a file again replaces its earlier correction."""
    return hashlib.sha256(path.encode("utf-8", "surrogateescape")).hexdigest()[:20]


class CorrectionStore:
    """Thread-safe; several processes may append (each line is one O_APPEND write)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()
        self.journal = self.root / JOURNAL
        self.examples = self.root / EXAMPLES
        self._lock = threading.Lock()

    # --- writing ---------------------------------------------------------------------------

    def add(self, path: str, label: str, *, source: str | None = None, was: str = "",
            was_confidence: float = math.nan) -> Correction:
        """Keep `path` (read from `source` if it has moved) as an example of `label`."""
        key = key_for(path)
        example = self.examples / f"{key}.jpg"
        self.examples.mkdir(parents=True, exist_ok=True)
        _save_example(Path(source or path), example, shown=path)
        correction = Correction(key, path, label, was, was_confidence, _now(), example)
        self._append(ADD, correction)
        return correction

    def undo(self, path: str) -> Correction | None:
        """Withdraw the active correction of `path`; None if it has none."""
        current = {c.path: c for c in self.active()}.get(path)
        if current is None:
            return None
        self._append(UNDO, current)
        return current

    def _append(self, action: str, c: Correction) -> None:
        cells = [_now().isoformat(timespec="seconds"), action, c.key, c.path, c.label, c.was,
                 "" if math.isnan(c.was_confidence) else f"{c.was_confidence:.4f}"]
        text = io.StringIO()
        csv.writer(text).writerow([spreadsheet_safe(v) for v in cells])
        header = io.StringIO()
        csv.writer(header).writerow(COLUMNS)
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            file = AppendFile(self.journal, header=header.getvalue().encode())
            try:
                file.append(text.getvalue().encode("utf-8"))
            except OSError as exc:
                raise CorrectionError(f"{self.journal}: cannot record the correction: "
                                      f"{exc.strerror or exc}") from None
            finally:
                file.close()

    # --- reading ---------------------------------------------------------------------------

    def active(self) -> list[Correction]:
        """The newest correction of each file, oldest first, without undone ones."""
        current: dict[str, Correction] = {}
        for action, correction in self._replay():
            if action == ADD:
                current.pop(correction.path, None)
                current[correction.path] = correction
            elif action == UNDO:
                current.pop(correction.path, None)
        return list(current.values())

    def _replay(self):  # noqa: ANN202 - yields (action, Correction)
        try:
            text = self.journal.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return
        for row in csv.DictReader(io.StringIO(text)):
            try:
                when = datetime.fromisoformat(row["time"])
                confidence = float(row["was_confidence"]) if row["was_confidence"] else math.nan
                key = row["key"]
                yield row["action"], Correction(
                    key, restore(row["path"]), restore(row["label"]), restore(row["was"]),
                    confidence, when, self.examples / f"{key}.jpg")
            except (KeyError, TypeError, ValueError):
                continue  # a torn or foreign line: the others still count


def _save_example(source: Path, target: Path, shown: str) -> None:
    """A small RGB JPEG copy of the picture (EXIF orientation applied, as classify sees it)."""
    from teddywatch.imaging import DecodeError, decode

    try:
        image = decode(source, EXAMPLE_SIDE)
    except DecodeError as exc:
        raise CorrectionError(f"{shown}: cannot keep it as an example: {exc}") from None
    except OSError as exc:
        raise CorrectionError(f"{shown}: cannot read it: {exc.strerror or exc}") from None
    image.thumbnail((EXAMPLE_SIDE, EXAMPLE_SIDE), Image.Resampling.LANCZOS)
    temporary = target.with_name(target.name + ".tmp")
    try:
        image.convert("RGB").save(temporary, "JPEG", quality=92)
        temporary.replace(target)
    except OSError as exc:
        raise CorrectionError(f"{target}: cannot save the example: {exc.strerror or exc}") from None


def _now() -> datetime:
    return datetime.now(timezone.utc).astimezone()
