"""What would fail or surprise at run time, found before running: `config check` and `run` ask here.

A valid config can still fail when `teddywatch run` starts (a model file that is not there, a
results log on a read-only disk) or surprise (a recursive watch of the home folder classifies
every photo in it). Each check returns Findings naming the config key; nothing here raises for
the user's mistakes, and nothing is written except a probe file that is removed at once.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from teddywatch.config import Config, WatchConfig

ERROR, WARNING = "error", "warning"
# A folder already holding more than this many images is worth a word before they are all
# classified (a few thousand: minutes of work on a laptop, and a results log as long).
MANY_IMAGES = 3000
COUNT_LIMIT = 1_000_000   # stop counting here (and say "at least")
COUNT_SECONDS = 10.0      # or after this long: a recursive watch of / must not hang `check`


@dataclass(frozen=True)
class Finding:
    level: str    # error: `run` would fail; warning: it would run, perhaps not as meant
    key: str      # the dotted config key, e.g. "watch[0].path"
    message: str

    def line(self, source: Path | str) -> str:
        return f"{self.level}: {source}: {self.key}: {self.message}"


@dataclass(frozen=True)
class ImageCount:
    count: int
    complete: bool  # False: counting stopped early; `count` is a lower bound

    def __str__(self) -> str:
        return f"{self.count:,}" if self.complete else f"at least {self.count:,}"


def check(config: Config) -> list[Finding]:
    """Every check, errors and warnings, in config order (the model load is the slow one)."""
    return (check_model(config) + check_folders(config) + check_writable(config)
            + [finding for finding, _ in large_watches(config)])


# --- the model ---------------------------------------------------------------------------------

def check_model(config: Config) -> list[Finding]:
    """Load the model as `run` would and classify one small test picture with it."""
    from teddywatch.engines import ModelError, load_engine

    model = config.model
    try:
        engine = load_engine(model.path, model.engine, threads=1, code=model.code)
    except ModelError as exc:
        return [Finding(ERROR, "model.path", str(exc))]
    except Exception as exc:  # a model file that is not what it claims to be
        return [Finding(ERROR, "model.path", f"{model.path}: cannot load the model: "
                        f"{type(exc).__name__}: {exc}")]
    try:
        return _classify_test_image(engine, model.unsure_threshold)
    finally:
        engine.close()


def _classify_test_image(engine, threshold: float | None) -> list[Finding]:
    from PIL import Image

    from teddywatch.results import ERROR as FAILED
    from teddywatch.results import FileId, Job
    from teddywatch.worker import classify_batch

    with tempfile.TemporaryDirectory(prefix="teddywatch-check-") as folder:
        picture = Path(folder) / "test.jpg"
        Image.new("RGB", (320, 240), (139, 94, 60)).save(picture, "JPEG")
        try:
            [result] = classify_batch(engine, [Job(FileId.of(picture))],
                                      engine.default_threshold if threshold is None
                                      else threshold)
        except Exception as exc:
            return [Finding(ERROR, "model.path", f"the model loaded but failed on a test "
                            f"picture: {type(exc).__name__}: {exc}")]
    if result.status == FAILED:
        return [Finding(ERROR, "model.path", f"the model loaded but failed on a test picture: "
                        f"{result.detail}")]
    return []


# --- folders and files -----------------------------------------------------------------------

def check_folders(config: Config) -> list[Finding]:
    """A watched folder that is not there is a warning: it may be a drive not plugged in yet."""
    findings = []
    for index, watch in enumerate(config.watch):
        if not watch.path.exists():
            findings.append(Finding(WARNING, f"watch[{index}].path",
                                    f"{watch.path} does not exist (yet); teddywatch watches it "
                                    "once it appears"))
    return findings


def check_writable(config: Config) -> list[Finding]:
    """The results log, the gallery page and the sort destination must be writable."""
    from teddywatch.gallery import default_page

    targets = [("log.path", config.log.path, "the results log")]
    if config.gallery.enabled:
        targets.append(("gallery.enabled", default_page(), "the gallery page"))
    if config.sort.enabled:
        targets.append(("sort.destination", config.sort.destination / "x", "sorted files"))
    findings = []
    for key, path, what in targets:
        problem = unwritable(path)
        if problem:
            findings.append(Finding(ERROR, key, f"cannot write {what} {path}: {problem}"))
    return findings


def unwritable(path: Path) -> str | None:
    """Why `path` cannot be written (created, with its missing folders), else None.

    Tried for real, with a probe file in the nearest folder that exists: permission bits do not
    tell about read-only mounts, and root passes every access() check."""
    if path.is_dir():
        return "it is a folder"
    if path.exists():
        return None if os.access(path, os.W_OK) else "permission denied"
    folder = path.parent
    while not folder.exists():
        if folder == folder.parent:
            return "no such folder"
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".teddywatch-probe-")
    except OSError as exc:
        return f"{folder}: {exc.strerror or exc}"
    os.close(handle)
    os.unlink(probe)
    return None


# --- watches that would classify a whole library ----------------------------------------------

def large_watches(config: Config) -> list[tuple[Finding, ImageCount]]:
    """Watches of /, of the home folder, or of a folder already holding more than MANY_IMAGES
    images, each with the count: `run` classifies every one not yet in the results log."""
    home = Path.home().resolve()
    out = []
    for index, watch in enumerate(config.watch):
        if watch.skip_existing or not watch.path.is_dir():
            continue
        root = watch.path.resolve()
        broad = watch.recursive and (root == Path(root.anchor) or root == home)
        count = count_images(watch)
        if not broad and count.count <= MANY_IMAGES:
            continue
        where = "the whole disk" if root == Path(root.anchor) else \
            "your home folder" if root == home else str(watch.path)
        out.append((Finding(WARNING, f"watch[{index}].path",
                            f"{where} ({'recursive' if watch.recursive else 'not recursive'}) "
                            f"already holds {count} images; every one not yet in the results log "
                            "will be classified. Watch a narrower folder, or set skip_existing "
                            "= true to classify only new files"), count))
    return out


def count_images(watch: WatchConfig, *, limit: int = COUNT_LIMIT,
                 seconds: float = COUNT_SECONDS) -> ImageCount:
    """The images this watch would pick up now (patterns, ignore and hidden folders as the
    watcher applies them), counted without opening a file."""
    from teddywatch.watch import wanted

    root = os.path.abspath(watch.path)
    patterns = tuple(p.lower() for p in watch.patterns)
    deadline = time.monotonic() + seconds
    count, stack = 0, [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if watch.recursive and not entry.name.startswith("."):
                        stack.append(entry.path)
                    continue
            except OSError:
                continue
            name = entry.name.lower()
            if any(fnmatch.fnmatchcase(name, p) for p in patterns) and \
                    wanted(entry.path, root, watch):
                count += 1
        if count >= limit or time.monotonic() > deadline:
            return ImageCount(count, complete=not stack and count < limit)
    return ImageCount(count, complete=True)
