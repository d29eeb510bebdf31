"""The fastai engine: runs a fast.ai learner exported with `learn.export()` (a .pkl) on the CPU.

Security: a .pkl is a Python pickle, and unpickling it can run arbitrary code. teddywatch loads a
learner only from the model path in the config or one given explicitly on the command line
(`--model`), never from a watched folder. Likewise the `code` files (`[model] code = [...]`,
`--code FILE`) are executed as Python before unpickling. Treat both like programs you run.

Known load failures become a one-paragraph `ModelError` that says what to do:

* a labelling function (say `is_cat`) that lived in the training notebook's `__main__`: list the
  Python file that defines it in `code`; its top-level names are put into `__main__` before the
  pickle is loaded;
* a learner exported on Windows (`WindowsPath` in the pickle): handled by loading `WindowsPath`
  as `PosixPath`;
* a learner from a newer (or much older) fastai / torch / torchvision than installed;
* fastai or torch not installed at all (the `[fastai]` extra).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import pathlib
import re
import sys
import warnings
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image

from teddywatch import resources
from teddywatch.imaging import DECODE_MARGIN, decode_size
from teddywatch.engines import ModelError, file_sha256
from teddywatch.engines.learner_kind import refuse_unservable
from teddywatch.engines.probe import check_outputs
from teddywatch.results import Prediction

log = logging.getLogger(__name__)

INSTALL_HINT = resources.pip_install_command("fastai")


def _versions() -> str:
    out = []
    for mod in ("fastai", "torch", "torchvision", "timm"):
        try:
            out.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001 - only for the message
            out.append(f"{mod} not installed")
    return ", ".join(out)


def _load_code(files: Sequence[Path]) -> None:
    """Run each file as a module and copy its public top-level names into `__main__`."""
    main = sys.modules["__main__"]
    for i, f in enumerate(files):
        f = Path(f)
        if not f.is_file():
            raise ModelError(f"{f}: code file not found. [model] code (or --code) must list "
                             "Python files that define the functions the learner was trained "
                             "with, e.g. code = [\"labels.py\"].")
        spec = importlib.util.spec_from_file_location(f"teddywatch_user_code_{i}_{f.stem}", f)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(mod)
        except Exception as e:  # noqa: BLE001 - user code; report, don't crash
            raise ModelError(f"{f}: running this code file failed ({type(e).__name__}: {e}). "
                             "Fix the file; it should only define the functions and classes "
                             "the learner was trained with.") from e
        for k, v in vars(mod).items():
            if not k.startswith("__"):
                setattr(main, k, v)


@contextlib.contextmanager
def _windows_paths_as_posix() -> Iterator[None]:
    """Unpickle `pathlib.WindowsPath` objects (from a learner exported on Windows) as PosixPath."""
    if sys.platform == "win32":
        yield
        return
    saved = pathlib.WindowsPath
    pathlib.WindowsPath = pathlib.PosixPath  # type: ignore[misc, assignment]
    try:
        yield
    finally:
        pathlib.WindowsPath = saved  # type: ignore[misc]


_MISSING_ATTR = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")


def _main_names() -> set[str]:
    """Names pickle may print for `__main__` (e.g. 'teddywatch.__main__' under `python -m`)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return {"__main__", getattr(spec, "name", "__main__") or "__main__"}


def pickled_by_old_fastai(path: Path) -> bool:
    """True if the pickle names fastcore's `Transform`/`Pipeline` (fastai 2.7 and older).

    fastai 2.8 moved them to the `fasttransform` package; fastcore keeps an empty
    `fastcore.transform`, so an old learner fails with a confusing "Can't get attribute".
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:  # torch.save's zip format
            names = [n for n in archive.namelist() if n.endswith("data.pkl")]
            data = archive.read(names[0]) if names else b""
    except (OSError, zipfile.BadZipFile, KeyError):
        try:
            with open(path, "rb") as handle:
                data = handle.read(64 << 20)
        except OSError:
            return False
    return b"fastcore.transform" in data


def quiet_torch_warnings() -> None:
    """timm/torch warn on import that `torch.jit.script` is deprecated: not the user's business."""
    warnings.filterwarnings("ignore", message=r".*`torch\.jit\.script` is deprecated",
                            category=FutureWarning)


def load_learner_safely(path: Path, code: Sequence[Path] = ()):  # noqa: ANN201
    """`fastai.learner.load_learner(path, cpu=True)` with teddywatch's ModelError messages."""
    quiet_torch_warnings()
    try:
        return _load_learner(path, code)
    except ModelError:
        if not pickled_by_old_fastai(path):
            raise
    try:
        import fastai
        installed = fastai.__version__
    except ImportError:
        installed = "not installed"
    raise ModelError(
        f"{path}: this learner was pickled by fastai 2.7 or older (it refers to fastcore's old "
        f"Transform and Pipeline, which fastai 2.8 replaced), and fastai {installed} cannot "
        "unpickle it; no --code file can supply them. Either install the fastai version it was "
        "made with (pip install 'fastai<2.8') to serve it with engine = \"fastai\" or to run "
        "'teddywatch export' on it, or load it there and re-export it with fastai 2.8 "
        "(learn.export()).") from None


def _load_learner(path: Path, code: Sequence[Path] = ()):  # noqa: ANN202
    try:
        import torch
        from fastai.learner import Learner
        import fastai.vision.all  # noqa: F401  - registers the vision types the pickle names
    except ImportError as e:
        raise ModelError(f"{path}: the fastai engine needs fastai and torch, which are not "
                         f"installed ({e}). Install them with {INSTALL_HINT}, or export the "
                         "learner to ONNX (`teddywatch export LEARNER.pkl`) and use the lean "
                         "onnx engine.") from e
    if code:
        _load_code(code)
    try:
        with _windows_paths_as_posix(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # fastai's load_learner(cpu=True), minus its handler that turns a missing module
            # into an UnboundLocalError (fastai 2.8).
            res = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(res, Learner):
            raise ModelError(f"{path}: this file holds a {type(res).__name__}, not a fast.ai "
                             "Learner. Give the .pkl written by learn.export().")
        res.dls.cpu()
        if hasattr(res, "channels_last"):
            res = res.to_contiguous(to_fp32=True)
        elif hasattr(res, "mixed_precision"):
            res = res.to_fp32()
        elif hasattr(res, "non_native_mixed_precision"):
            res = res.to_non_native_fp32()
        return res
    except ModelError:
        raise
    except AttributeError as e:
        msg = str(e)
        m = _MISSING_ATTR.search(msg)
        if m and m.group(2) in _main_names():
            raise ModelError(
                f"{path}: this learner was trained with a function or class '{m.group(1)}' "
                "defined in the training notebook or script itself, and the pickle only stores "
                f"its name. Put the definition of '{m.group(1)}' (copied from the notebook, with "
                "its imports) in a Python file and list it in the config as [model] code = "
                "[\"file.py\"] or pass --code file.py; teddywatch runs that file before loading "
                "the learner.") from None
        if m:
            raise ModelError(
                f"{path}: the learner refers to '{m.group(1)}' in module '{m.group(2)}', which "
                f"the installed packages do not have ({_versions()}). It was probably exported "
                "with a different fastai/torch version: install the versions it was trained "
                "with, or re-export it there with `teddywatch export` to ONNX and use the onnx "
                "engine.") from None
        raise ModelError(f"{path}: cannot load this learner ({msg.splitlines()[-1]}). "
                         f"Installed: {_versions()}. If it was trained with custom functions, "
                         "list the file that defines them in [model] code / --code.") from None
    except (ModuleNotFoundError, ImportError) as e:
        name = getattr(e, "name", None) or str(e)
        if name and not str(name).split(".")[0] in ("fastai", "torch", "torchvision", "fastcore",
                                                     "timm", "teddywatch"):
            raise ModelError(
                f"{path}: the learner needs the Python module '{name}', which is not installed "
                f"or not importable. Install it, or if it is your own code (e.g. a module from "
                "the training notebook's folder), list its file in [model] code / --code.") from None
        raise ModelError(
            f"{path}: this learner needs '{name}', which the installed fastai/torch do not "
            f"provide ({_versions()}); it was likely exported with a newer or older fastai. "
            "Install matching versions (pip install 'fastai==X' as used for training), or "
            "export it to ONNX where it was trained and use the onnx engine.") from None
    except NotImplementedError as e:
        raise ModelError(f"{path}: cannot load this learner on this system ({e}). It was probably "
                         "exported on another operating system; re-export it here or export it to "
                         "ONNX where it was trained.") from None
    except RuntimeError as e:
        raise ModelError(f"{path}: not a loadable fast.ai learner ({str(e).splitlines()[0]}). "
                         f"Installed: {_versions()}. Give the .pkl written by learn.export(); a "
                         "file from a different torch version may need those versions.") from None
    except (EOFError, OSError, ValueError, TypeError, IndexError) as e:
        raise ModelError(f"{path}: not a fast.ai learner file or it is damaged "
                         f"({type(e).__name__}: {e}). Give the .pkl written by learn.export().") \
            from None
    except Exception as e:  # noqa: BLE001 - unpickling can raise anything; never a traceback
        if type(e).__name__ == "UnpicklingError":
            raise ModelError(f"{path}: not a fast.ai learner file or it is damaged ({e}). Give "
                             "the .pkl written by learn.export().") from None
        raise ModelError(f"{path}: loading the learner failed ({type(e).__name__}: {e}). "
                         f"Installed: {_versions()}.") from None


class FastaiEngine:
    """A fast.ai learner on the CPU; batches go through the learner's own test_dl transforms."""

    def __init__(self, path: Path, *, threads: int = 0, code: Sequence[Path] = ()) -> None:
        path = Path(path)
        self.path = path
        self.learn = load_learner_safely(path, code)
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.learn.model.eval()
        refuse_unservable(self.learn, path)
        vocab = self.learn.dls.vocab
        if vocab and isinstance(vocab[0], (list, tuple)):  # (L, L) for some learners
            vocab = vocab[-1]
        self.labels = tuple(str(v) for v in vocab)
        self.model_id = f"{path.name}@{file_sha256(path)[:8]}"
        self.decode_size = decode_size(self._input_size(), self._decode_margin())
        self.default_threshold = self._threshold()
        act = getattr(self.learn.loss_func, "activation", None)
        self._activation = act
        self.concurrent_predict = False  # a Learner's dataloaders are not thread-safe
        check_outputs(self, path)

    def _input_size(self) -> int:
        for t in self.learn.dls.after_item.fs:
            size = getattr(t, "size", None)
            if size is not None and type(t).__name__ in ("Resize", "RandomResizedCrop",
                                                         "RandomCrop", "CropPad"):
                s = list(size) if hasattr(size, "__len__") else [size, size]
                xtra = getattr(t, "val_xtra", 0.0)
                return int(max(s) * (1 + xtra)) if xtra else int(max(s))
        return 224

    def _decode_margin(self) -> float | None:
        """The margin `teddywatch export` measured for this learner (its .json beside it)."""
        meta = self.path.with_suffix(".json")
        if not meta.is_file():
            return DECODE_MARGIN
        import json

        from teddywatch.engines.onnx import decode_margin

        try:
            return decode_margin(json.loads(meta.read_text()), meta)
        except (ValueError, AttributeError):
            return DECODE_MARGIN

    def _threshold(self) -> float:
        meta = self.path.with_suffix(".json")
        info = getattr(self.learn, "teddywatch", None)
        if meta.is_file():
            import json

            try:
                return float(json.loads(meta.read_text())["unsure_threshold"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s: no usable unsure_threshold; using 0.5", meta)
        elif isinstance(info, dict) and "unsure_threshold" in info:
            return float(info["unsure_threshold"])
        return 0.5

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        if not images:
            return []
        import torch

        rgb = []
        for im in images:
            if im.mode != "RGB":
                im = im.convert("RGB")
            else:
                im.load()  # fastai wraps the Image's pixel core, which a lazy file hasn't read yet
            rgb.append(im)
        dl = self.learn.dls.test_dl(rgb, num_workers=0, bs=max(1, len(rgb)))
        # The learner's own validation transforms (test_dl), then the model directly: same
        # numbers as learn.get_preds, without the callback machinery's per-call overhead.
        model = self.learn.model
        outs = []
        with torch.no_grad():
            for batch in dl:
                outs.append(model(batch[0]))
        logits = torch.cat(outs)
        if self._activation is not None:
            probs = self._activation(logits)
        else:
            probs = logits.softmax(1)
        out = []
        for row in probs.float().tolist():
            top = tuple(sorted(zip(self.labels, row), key=lambda t: -t[1]))
            out.append(Prediction(top[0][0], float(top[0][1]), top))
        return out

    def close(self) -> None:
        self.learn = None  # type: ignore[assignment]
