"""Where teddywatch's own files and the user's files live, frozen (PyInstaller) or not.

Every other module asks here instead of computing paths itself, so a frozen app and a source
checkout find the bundled model and icon the same way.
"""

from __future__ import annotations

import sys
from pathlib import Path

import platformdirs

APP = "teddywatch"
# The int8 model serves by default: 2x faster and a quarter of the memory of bears.onnx (fp32,
# kept for the fast.ai agreement tests), with 99.7% the same labels (models/README.md).
DEFAULT_MODEL_NAME = "bears-int8.onnx"


def _bundle_roots() -> list[Path]:
    """Folders that may hold a `models/` directory, most specific first."""
    roots: list[Path] = []
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:  # PyInstaller unpacks data files here
        roots.append(Path(frozen_root))
    package_dir = Path(__file__).resolve().parent
    roots.append(package_dir / "_data")  # a wheel install (models force-included by hatchling)
    roots.append(package_dir.parent)  # a source checkout or editable install
    return roots


def models_dir() -> Path:
    """The folder holding the default model (the first candidate that has it)."""
    for root in _bundle_roots():
        candidate = root / "models"
        if (candidate / DEFAULT_MODEL_NAME).exists():
            return candidate
    return _bundle_roots()[-1] / "models"


def default_model_path() -> Path:
    return models_dir() / DEFAULT_MODEL_NAME


def config_dir() -> Path:
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def default_config_path() -> Path:
    return config_dir() / "config.toml"


def data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir(APP, appauthor=False))


def default_results_log() -> Path:
    return data_dir() / "results.csv"


def default_inbox() -> Path:
    return Path(platformdirs.user_pictures_dir()) / APP


def default_sort_destination() -> Path:
    return Path(platformdirs.user_pictures_dir()) / f"{APP}-sorted"


def checkout_dir() -> Path | None:
    """The source checkout this package runs from (an editable install, `make run`), else None."""
    if getattr(sys, "frozen", False):
        return None
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").exists() and (root / ".git").exists() else None


def pip_install_command(extra: str) -> str:
    """The command that adds an optional extra to this very installation, as a user types it."""
    checkout = checkout_dir()
    if checkout is None:
        return f"pip install 'teddywatch[{extra}]'"
    return f"{sys.executable} -m pip install -e '{checkout}[{extra}]'"


def example_config_text() -> str:
    """The documented example config (beside the package, in the wheel, or in the frozen bundle)."""
    for root in _bundle_roots():
        candidate = root / "config.example.toml"
        if candidate.exists():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError("config.example.toml is missing from this installation")
