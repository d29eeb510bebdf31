"""The tray's teaching items: each recent result as a submenu (open it, say it is wrong, undo
that) and the learned model (which version is in use, learn from the corrections, undo learning).

pystray calls menu items on the GTK loop, so an item only hands its work to this module's own
thread (a correction decodes the picture for its example; learning takes seconds) and returns.
When the work is done, `refresh` (the tray's) has the menu rebuilt on the GTK loop, and anything
that went wrong reaches the user as one notification line; the app log has the rest.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from teddywatch.results import Result
from teddywatch.teach.corrections import CorrectionError, CorrectionStore
from teddywatch.trayview import correction_labels, learned_version, model_text, result_text

log = logging.getLogger(__name__)

LEARNED_TITLE = "teddywatch learned from your corrections"  # as when the service learns itself


class TeachMenu:
    """Builds the items; runs what they ask on one thread, in the order they were clicked."""

    def __init__(self, service: Any, model_path: Path, pystray: Any, *,
                 opens: Callable[[str], Callable[..., None]],
                 tell: Callable[[str, str], None], refresh: Callable[[], None]) -> None:
        self.service = service
        self.model_path = model_path
        self._pystray = pystray
        self._opens = opens
        self._tell = tell
        self._refresh = refresh
        # The label the user gave each logged path; read on the GTK loop, written by the tasks.
        self.corrected: dict[str, str] = {}
        self.learning = False
        self._lock = threading.Lock()
        self._tasks: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="teddywatch-teach")

    def load(self, store: CorrectionStore | None = None) -> None:
        """The corrections made before (an earlier run, the command line): shown from the start."""
        try:
            active = (store or CorrectionStore()).active()
        except OSError as exc:
            log.warning("cannot read the corrections: %s", exc)
            return
        self.corrected = {c.path: c.label for c in active}

    def close(self) -> None:
        """Finish what was clicked (a learn under way, a correction), then end the thread."""
        with self._lock:
            tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.shutdown(wait=True)

    # --- the items --------------------------------------------------------------------------

    def result_item(self, result: Result) -> Any:
        """'teddy 99.7% - IMG_0042.jpg' > Open, Wrong? It is… > (labels); once corrected,
        'teddy 99.7% - IMG_0042.jpg ✓ other' > Open, ✓ corrected to other, Undo correction."""
        Menu, Item = self._pystray.Menu, self._pystray.MenuItem
        corrected = self.corrected.get(result.path, "")
        items = [Item("Open", self._opens(result.moved_to or result.path))]
        if corrected:
            items += [Item(f"✓ corrected to {corrected}", None, enabled=False),
                      Item("Undo correction", self._runs(self._undo_correction, result))]
        else:
            labels = correction_labels(result, self.service.labels)
            if labels:
                items.append(Item("Wrong? It is…", Menu(*(
                    Item(label, self._runs(self._correct, result, label)) for label in labels))))
        return Item(result_text(result, corrected), Menu(*items))

    def model_items(self) -> list[Any]:
        """The model in use and what can be done with it; disabled for a model that cannot
        learn (a fast.ai learner, an ONNX model without its features)."""
        Item = self._pystray.MenuItem
        return [
            Item(lambda _: model_text(self.service.model_name, self.service.can_learn), None,
                 enabled=False,
                 visible=lambda _: bool(self.service.model_name)),
            Item(lambda _: "Learning from corrections…" if self.learning else
                 "Learn from corrections", self._learn,
                 enabled=lambda _: self.service.can_learn and not self.learning),
            Item("Undo learning", self._runs(self._undo_learning),
                 enabled=lambda _: self.service.can_learn
                 and learned_version(self.service.model_name) > 0),
        ]

    # --- on the GTK loop: hand over -----------------------------------------------------------

    def _runs(self, task: Callable[..., None], *args: Any) -> Callable[..., None]:
        return lambda *_: self._submit(task, *args)

    def _learn(self, *_: Any) -> None:
        if self.learning:
            return
        self.learning = True  # pystray rebuilds the menu after this item: "Learning…", disabled
        self._submit(self._learn_now)

    def _submit(self, task: Callable[..., None], *args: Any) -> None:
        with self._lock:
            if self._tasks is not None:
                self._tasks.submit(self._run, task, *args)

    def _run(self, task: Callable[..., None], *args: Any) -> None:
        try:
            task(*args)
        except Exception as exc:  # a bug, not the user's mistake: the log has the details
            log.exception("the tray's %s failed", task.__name__.strip("_").replace("_", " "))
            self._tell("teddywatch: something went wrong",
                       f"{type(exc).__name__}: {exc} (details in the log file)")
        finally:
            self._refresh()

    # --- on the teach thread ------------------------------------------------------------------

    def _correct(self, result: Result, label: str) -> None:
        name = os.path.basename(result.moved_to or result.path)
        try:
            correction = self.service.correct(result.path, label)
        except (CorrectionError, OSError) as exc:
            log.warning("cannot correct %s to %s: %s", result.path, label, exc)
            self._tell("teddywatch: cannot correct", _one_line(exc, name))
            return
        self.corrected[result.path] = correction.label
        log.info("%s: corrected to %s", result.path, correction.label)

    def _undo_correction(self, result: Result) -> None:
        name = os.path.basename(result.moved_to or result.path)
        try:
            withdrawn = self.service.undo_correction(result.path)
        except (CorrectionError, OSError) as exc:
            log.warning("cannot undo the correction of %s: %s", result.path, exc)
            self._tell("teddywatch: cannot undo the correction", _one_line(exc, name))
            return
        self.corrected.pop(result.path, None)
        if withdrawn is None:  # undone elsewhere meanwhile (the command line)
            self._tell("teddywatch", f"{name} has no correction to undo")
        else:
            log.info("%s: correction to %s undone", result.path, withdrawn.label)

    def _learn_now(self) -> None:
        from teddywatch.engines import ModelError
        from teddywatch.imaging import DecodeError
        from teddywatch.teach.learn import LearnError, learn

        try:
            report = learn(self.model_path)
        except (LearnError, ModelError, DecodeError, OSError) as exc:
            log.warning("cannot learn from the corrections: %s", exc)
            self._tell("teddywatch: cannot learn", _one_line(exc))
            return
        finally:
            self.learning = False
        log.info("learned from the corrections: %s", "; ".join(report.lines()))
        self._tell(LEARNED_TITLE, report.lines()[-1])

    def _undo_learning(self) -> None:
        said = self.service.undo_learning()
        log.info("undo learning: %s", said)
        self._tell("teddywatch", said)


def _one_line(exc: BaseException, name: str = "") -> str:
    """An error's message as one line (a CorrectionError already names the file)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{name or exc.filename}: {exc.strerror}"
    return text
