"""Every learned model of one base model, and which one is in use.

    <data dir>/learned/<model file>@<sha8>/
        v0001.npz, v0002.npz, ...   every adapter `teddywatch learn` made (teach/adapter.py)
        history.txt                 append-only: "use N" (0 = the shipped model) or "undo"

The version in use is what replaying history.txt leaves on top: `learn` appends "use N",
`learn --undo` appends "undo", which goes back to the one used before. Nothing is rewritten or
deleted, so every learned model can be gone back to. A running service notices a new line
(`stamp` changes) and loads that version between two batches (teach/engine.py).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from teddywatch import resources
from teddywatch.teach.adapter import Adapter

HISTORY = "history.txt"
SHIPPED = 0


def default_root() -> Path:
    return resources.data_dir() / "learned"


class ModelVersions:
    def __init__(self, model_id: str, root: Path | None = None) -> None:
        self.model_id = model_id
        self.folder = (root or default_root()) / re.sub(r"[^\w.@-]+", "_", model_id)
        self.history = self.folder / HISTORY
        self._lock = threading.Lock()

    def path_of(self, version: int) -> Path:
        return self.folder / f"v{version:04d}.npz"

    def versions(self) -> list[int]:
        """Every learned version on disk, oldest first."""
        if not self.folder.is_dir():
            return []
        found = (re.fullmatch(r"v(\d{4,})\.npz", p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, adapter: Adapter) -> int:
        """Keep `adapter` as the next version (not yet in use)."""
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            version = max(self.versions(), default=0) + 1
            while True:  # claim the number: another process (the tray, the CLI) may learn too
                try:
                    os.close(os.open(self.path_of(version), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
                    break
                except FileExistsError:
                    version += 1
            adapter.save(self.path_of(version))
            return version

    def stack(self) -> list[int]:
        """The versions used in turn; the last is in use ([] = the shipped model)."""
        try:
            lines = self.history.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        stack: list[int] = []
        for line in lines:
            words = line.split()
            if words[:1] == ["use"] and len(words) == 2 and words[1].isdigit():
                stack.append(int(words[1]))
            elif words == ["undo"] and stack:
                stack.pop()
        return stack

    def current(self) -> int:
        stack = self.stack()
        return stack[-1] if stack else SHIPPED

    def use(self, version: int) -> None:
        self._append(f"use {version}")

    def undo(self) -> tuple[int, int] | None:
        """Go back to the version used before; (from, to), or None if the shipped one is in use."""
        stack = self.stack()
        if not stack:
            return None
        self._append("undo")
        return stack[-1], (stack[-2] if len(stack) > 1 else SHIPPED)

    def stamp(self) -> tuple[int, int]:
        """Changes whenever the version in use may have changed (cheap: one stat)."""
        try:
            st = self.history.stat()
        except FileNotFoundError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def load(self, version: int) -> Adapter | None:
        return None if version == SHIPPED else Adapter.load(self.path_of(version))

    def _append(self, line: str) -> None:
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.history, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
