"""The service learning by itself ([learn] auto = true): after `after` new corrections, run
`teddywatch learn` on a thread of its own. The worker thread picks the new version up before its
next batch (teach/engine.py), so classifying never waits for learning.

"New" means made after the newest learned version (used or not), so a version the check refused
is not learned again and again from the same corrections.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from pathlib import Path
from typing import Callable

from teddywatch.teach.corrections import CorrectionStore
from teddywatch.teach.learn import LearnError, LearnReport, learn
from teddywatch.teach.versions import ModelVersions

log = logging.getLogger(__name__)


class AutoLearner:
    def __init__(self, model_path: Path, model_id: str, after: int,
                 on_learned: Callable[[LearnReport], None], *, store: CorrectionStore | None = None,
                 versions_root: Path | None = None, poll_seconds: float = 2.0) -> None:
        self.model_path = model_path
        self.after = after
        self.on_learned = on_learned
        self.store = store or CorrectionStore()
        self.versions = ModelVersions(model_id, versions_root)
        self.versions_root = versions_root
        self.poll_seconds = poll_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="teddywatch-learn", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def nudge(self) -> None:
        """A correction was just made in this process: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def pending(self) -> int:
        """Corrections made since the newest learned version."""
        since = self._newest_learned_at()
        return sum(1 for c in self.store.active()
                   if since is None or (c.time is not None and c.time > since))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self.pending() >= self.after:
                    report = learn(self.model_path, store=self.store,
                                   versions_root=self.versions_root)
                    log.info("learned by itself: %s", "; ".join(report.lines()))
                    self.on_learned(report)
            except LearnError as exc:
                log.warning("could not learn from the corrections: %s", exc)
            except Exception:  # noqa: BLE001 - learning must never take the service down
                log.exception("learning from the corrections failed")

    def _newest_learned_at(self) -> datetime | None:
        newest = max(self.versions.versions(), default=0)
        if not newest:
            return None
        try:
            stamp = self.versions.load(newest).info.get("learned_at", "")
            return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z")
        except (OSError, ValueError, KeyError, AttributeError):
            return None
