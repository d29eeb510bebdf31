"""Find and load the TOML config into frozen dataclasses; every mistake becomes a ConfigError.

Validation happens here, at the edge: the rest of teddywatch trusts a `Config`. Each error names
the file, the dotted key, what was expected and what was given, so people can fix it without
reading code.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

from teddywatch import resources

IMAGE_PATTERNS = ("*.jpg", "*.jpeg", "*.jpe", "*.png", "*.webp", "*.gif", "*.bmp", "*.tif",
                  "*.tiff", "*.heic", "*.heif", "*.avif")


class ConfigError(Exception):
    """A config the user must fix. str() is the whole message, ready to print."""


@dataclass(frozen=True)
class WatchConfig:
    path: Path
    recursive: bool = False
    patterns: tuple[str, ...] = IMAGE_PATTERNS
    ignore: tuple[str, ...] = ()
    poll: bool = False
    poll_seconds: float = 5.0
    skip_existing: bool = False


@dataclass(frozen=True)
class ModelConfig:
    path: Path = field(default_factory=resources.default_model_path)
    engine: str = "auto"
    # None: use the threshold recorded in the model's metadata.
    unsure_threshold: float | None = None
    code: tuple[Path, ...] = ()
    threads: int = 0
    batch_size: int = 16


@dataclass(frozen=True)
class LogConfig:
    path: Path = field(default_factory=resources.default_results_log)


@dataclass(frozen=True)
class NotifyConfig:
    enabled: bool = True
    summarise_after: int = 3
    burst_seconds: float = 5.0


@dataclass(frozen=True)
class SortConfig:
    enabled: bool = False
    mode: str = "move"
    destination: Path = field(default_factory=resources.default_sort_destination)
    unsure_folder: str = "unsure"
    error_folder: str = "error"

    def folders(self, labels: Iterable[str]) -> set[str]:
        """Names of the folders under `destination` that sorting fills, for these labels."""
        return {*(label_folder(label) for label in labels), self.unsure_folder,
                self.error_folder}


def label_folder(label: str) -> str:
    """The sort folder name for a label (no path separators, never empty, '.' or '..')."""
    name = label.replace("/", "_").replace("\\", "_").strip()
    return name if name not in ("", ".", "..") else "_"


@dataclass(frozen=True)
class ServiceConfig:
    queue_size: int = 1000
    rescan_minutes: float = 5.0
    settle_seconds: float = 1.0


@dataclass(frozen=True)
class GalleryConfig:
    enabled: bool = True
    items: int = 200
    serve: bool = True  # a live page from a local server (127.0.0.1 only), with corrections
    port: int = 0       # 0: any free port


@dataclass(frozen=True)
class DecodeConfig:
    max_megapixels: float = 90.0  # larger images are refused before they are decoded
    time_limit_seconds: float = 5.0  # a decode taking longer is stopped (0: no limit)


@dataclass(frozen=True)
class LearnConfig:
    auto: bool = False  # the service runs `teddywatch learn` by itself after `after` corrections
    after: int = 3


@dataclass(frozen=True)
class Config:
    watch: tuple[WatchConfig, ...]
    model: ModelConfig = field(default_factory=ModelConfig)
    log: LogConfig = field(default_factory=LogConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    sort: SortConfig = field(default_factory=SortConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    learn: LearnConfig = field(default_factory=LearnConfig)
    # The file this came from; None when every value is a default.
    source: Path | None = None


def default_config() -> Config:
    return Config(watch=(WatchConfig(path=resources.default_inbox()),))


# --- loading -------------------------------------------------------------------------------

def find_config(explicit: Path | None) -> Path | None:
    """The config file to read: the one given, else the user's if it exists, else None."""
    if explicit is not None:
        return explicit
    env = os.environ.get("TEDDYWATCH_CONFIG")
    if env:
        return Path(env)
    default = resources.default_config_path()
    return default if default.exists() else None


def load_config(path: Path | None) -> Config:
    """Read and validate `path` (None: all defaults). Raises ConfigError."""
    if path is None:
        return default_config()
    if not path.exists():
        raise ConfigError(
            f"config file not found: {path}. Create it with 'teddywatch config init' "
            f"(writes {resources.default_config_path()}) or pass an existing file with --config.")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; expected a TOML config file.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}. Fix the syntax at that line "
                          "(strings need quotes, tables look like [model]).") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
    return _Parser(path).parse(raw)


class _Parser:
    """Turns the raw TOML dict into a Config, collecting every problem before raising."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def parse(self, raw: dict[str, Any]) -> Config:
        sections = {"watch", "model", "log", "notify", "sort", "service", "gallery", "decode",
                    "learn"}
        self._unknown_keys(raw, sections, "")
        watches = self._watches(raw.get("watch"))
        config = Config(
            watch=watches,
            model=self._model(self._table(raw, "model")),
            log=self._section(LogConfig, self._table(raw, "log"), "log"),
            notify=self._notify(self._table(raw, "notify")),
            sort=self._sort(self._table(raw, "sort")),
            service=self._service(self._table(raw, "service")),
            gallery=self._gallery(self._table(raw, "gallery")),
            decode=self._section(DecodeConfig, self._table(raw, "decode"), "decode",
                                 max_megapixels=lambda v: None if 0 < v <= 1000 else
                                 "a number of megapixels above 0, at most 1000",
                                 time_limit_seconds=lambda v: None if v == 0 or 0.1 <= v <= 3600
                                 else "0 (no limit) or a number of seconds from 0.1 to 3600"),
            learn=self._section(LearnConfig, self._table(raw, "learn"), "learn",
                                after=lambda v: None if 1 <= v <= 1000 else
                                "a number of corrections from 1 to 1000"),
            source=self.path,
        )
        self._check_sort_not_watched(config)
        if len(self.problems) == 1:  # one line: "FILE: key: expected ... (got ...)"
            raise ConfigError(f"{self.path}: {self.problems[0]}")
        if self.problems:
            head = f"{self.path}: {len(self.problems)} problems in the config"
            raise ConfigError(head + ":\n" + "\n".join(f"  - {p}" for p in self.problems))
        return config

    # --- helpers --------------------------------------------------------------------------

    def _problem(self, key: str, expected: str, value: Any = None, *, given: bool = True) -> None:
        got = f" (got {value!r})" if given else ""
        self.problems.append(f"{key}: expected {expected}{got}")

    def _unknown_keys(self, table: dict[str, Any], known: set[str], prefix: str) -> None:
        for key in table:
            if key in known:
                continue
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean '{prefix}{close[0]}'?" if close else \
                f"known keys here: {', '.join(sorted(known))}"
            self.problems.append(f"{prefix}{key}: unknown key; {hint}")

    def _table(self, raw: dict[str, Any], name: str) -> dict[str, Any]:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self._problem(name, f"a table [{name}]", value)
            return {}
        return value

    def _section(self, cls: type, table: dict[str, Any], prefix: str, **checks: Any) -> Any:
        """Build dataclass `cls` from `table`, type-checking each field against its default."""
        known = {f.name for f in fields(cls)}
        self._unknown_keys(table, known, prefix + ".")
        values: dict[str, Any] = {}
        defaults = cls() if cls is not WatchConfig else None
        for f in fields(cls):
            if f.name not in table:
                continue
            key = f"{prefix}.{f.name}"
            default = getattr(defaults, f.name) if defaults is not None else None
            value = self._coerce(key, table[f.name], f.type, default)
            if value is not _BAD:
                values[f.name] = value
        for name, check in checks.items():
            if name in values:
                message = check(values[name])
                if message:
                    self._problem(f"{prefix}.{name}", message, table[name])
                    del values[name]
        if cls is WatchConfig and "path" not in values:
            return None  # reported above
        return cls(**values)

    def _coerce(self, key: str, value: Any, type_name: Any, default: Any) -> Any:
        kind = str(type_name)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            self._problem(key, "true or false", value)
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            self._problem(key, "a whole number", value)
        elif kind in ("float", "float | None"):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            self._problem(key, "a number", value)
        elif kind == "str":
            if isinstance(value, str):
                return value
            self._problem(key, "a string", value)
        elif kind == "Path":
            if isinstance(value, str) and value.strip() and "\0" not in value:
                return expand_path(value, self.path)
            self._problem(key, "a path as a non-empty string", value)
        elif kind.startswith("tuple[Path"):
            if isinstance(value, list) and all(isinstance(v, str) and v and "\0" not in v
                                               for v in value):
                return tuple(expand_path(v, self.path) for v in value)
            self._problem(key, "a list of paths as strings", value)
        elif kind.startswith("tuple[str"):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            self._problem(key, "a list of strings, like [\"*.jpg\"]", value)
        else:  # a field type this parser does not know is a programming error
            raise TypeError(f"unsupported config field type {kind} for {key}")
        return _BAD

    # --- sections -------------------------------------------------------------------------

    def _watches(self, value: Any) -> tuple[WatchConfig, ...]:
        if value is None:
            return default_config().watch
        if isinstance(value, dict):
            value = [value]  # [watch] written instead of [[watch]]: accept it
        if not isinstance(value, list) or not value:
            self._problem("watch", "one or more [[watch]] tables with a path", value)
            return ()
        watches = []
        for index, table in enumerate(value):
            prefix = f"watch[{index}]"
            if not isinstance(table, dict):
                self._problem(prefix, "a [[watch]] table", table)
                continue
            if "path" not in table:
                self._unknown_keys(table, {f.name for f in fields(WatchConfig)}, prefix + ".")
                self._problem(f"{prefix}.path", "the folder to watch, e.g. path = \"~/Pictures\"",
                              given=False)
                continue
            watch = self._section(WatchConfig, table, prefix,
                                  poll_seconds=_positive, patterns=_non_empty)
            if watch is None:  # the path was not a path: already a problem
                continue
            if watch.path.is_file():
                self._problem(f"{prefix}.path", "a folder, but this is a file", str(watch.path))
                continue
            watches.append(watch)
        return tuple(watches)

    def _model(self, table: dict[str, Any]) -> ModelConfig:
        return self._section(
            ModelConfig, table, "model",
            engine=lambda v: None if v in ("auto", "onnx", "fastai") else
            "one of \"auto\", \"onnx\", \"fastai\"",
            unsure_threshold=lambda v: None if 0.0 <= v <= 1.0 else "a number from 0 to 1",
            threads=lambda v: None if v >= 0 else "0 (automatic) or a positive number",
            batch_size=lambda v: None if 1 <= v <= 256 else "a number from 1 to 256",
        )

    def _notify(self, table: dict[str, Any]) -> NotifyConfig:
        return self._section(NotifyConfig, table, "notify",
                             summarise_after=lambda v: None if v >= 1 else "1 or more",
                             burst_seconds=_positive)

    def _sort(self, table: dict[str, Any]) -> SortConfig:
        def folder_name(v: str) -> str | None:
            ok = v and v not in (".", "..") and "/" not in v and "\\" not in v
            return None if ok else "a plain folder name, like \"unsure\""
        return self._section(SortConfig, table, "sort",
                             mode=lambda v: None if v in ("move", "copy") else
                             "\"move\" or \"copy\"",
                             unsure_folder=folder_name, error_folder=folder_name)

    def _service(self, table: dict[str, Any]) -> ServiceConfig:
        return self._section(ServiceConfig, table, "service",
                             queue_size=lambda v: None if v >= 1 else "1 or more",
                             rescan_minutes=lambda v: None if v >= 0 else
                             "0 (off) or a positive number of minutes",
                             settle_seconds=lambda v: None if v >= 0 else "0 or more seconds")

    def _gallery(self, table: dict[str, Any]) -> GalleryConfig:
        return self._section(GalleryConfig, table, "gallery",
                             items=lambda v: None if 1 <= v <= 2000 else "a number from 1 to 2000",
                             port=lambda v: None if v == 0 or 1024 <= v <= 65535 else
                             "0 (any free port) or a port number from 1024 to 65535")

    def _check_sort_not_watched(self, config: Config) -> None:
        """Sorting into a watched folder would classify sorted files again, forever."""
        if not config.sort.enabled:
            return
        dest = config.sort.destination.resolve()
        sorted_into = {dest / name for name in config.sort.folders(_model_labels(config.model))}
        for index, watch in enumerate(config.watch):
            folder = watch.path.resolve()
            inside = dest == folder or (watch.recursive and folder in dest.parents)
            if inside:
                self._problem("sort.destination",
                              f"a folder outside watch[{index}].path ({watch.path}); sorting into "
                              "a watched folder would classify sorted files again",
                              str(config.sort.destination))
            elif folder in sorted_into:
                self._problem(f"watch[{index}].path",
                              f"a folder that sorting does not fill; sorted files go into "
                              f"{folder}, which would classify them again",
                              str(watch.path))


def _model_labels(model: ModelConfig) -> tuple[str, ...]:
    """The labels in an exported model's metadata (`X.onnx` -> `X.json`); () when unknown here.

    A fast.ai `.pkl` is not opened to find them (unpickling runs code); the sorter checks its
    folders again at start, with the labels of the loaded model.
    """
    if model.path.suffix.lower() != ".onnx":
        return ()
    try:
        labels = json.loads(model.path.with_suffix(".json").read_text(encoding="utf-8"))["labels"]
    except (OSError, ValueError, KeyError, TypeError):
        return ()
    return tuple(str(label) for label in labels) if isinstance(labels, list) else ()


_BAD = object()


def _positive(v: float) -> str | None:
    return None if v > 0 else "a positive number"


def _non_empty(v: tuple[str, ...]) -> str | None:
    return None if v else "at least one pattern"


def expand_path(value: str, config_file: Path | None = None) -> Path:
    """Expand `~` and `$VARS`; a relative path is taken relative to the config file's folder."""
    path = Path(os.path.expandvars(os.path.expanduser(value)))
    if not path.is_absolute() and config_file is not None:
        path = config_file.parent / path
    return path


# --- showing -------------------------------------------------------------------------------

def to_toml(config: Config) -> str:
    """The effective config as TOML, every default filled in (for `config show`)."""
    lines = [f"# effective config; source: {config.source or 'built-in defaults'}", ""]
    for watch in config.watch:
        lines.append("[[watch]]")
        lines += [_toml_line(f.name, getattr(watch, f.name)) for f in fields(watch)]
        lines.append("")
    for name in ("model", "log", "notify", "sort", "service", "gallery", "decode", "learn"):
        section = getattr(config, name)
        lines.append(f"[{name}]")
        for f in fields(section):
            value = getattr(section, f.name)
            if value is None:
                lines.append(f"# {f.name} = (from the model's metadata)")
            else:
                lines.append(_toml_line(f.name, value))
        lines.append("")
    return "\n".join(lines)


def _toml_line(key: str, value: Any) -> str:
    return f"{key} = {_toml_value(value)}"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
