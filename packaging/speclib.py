"""Helpers for watch.spec: what to leave out of the bundle, decided from the Analysis TOCs.

Kept out of the spec so the rules are readable in one place. Each rule says what it saves.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

#: Runtime hooks that point GLib/GTK at data inside the bundle; with the desktop's own GTK they
#: would point it at folders that are not there (no theme, no settings backend, no pixbuf loaders).
GTK_RUNTIME_HOOKS = {"pyi_rth_gi", "pyi_rth_gio", "pyi_rth_glib", "pyi_rth_gdkpixbuf", "pyi_rth_gtk"}
#: Data the gi hooks collect for a bundled GTK: typelibs, GIO modules, pixbuf loaders, schemas,
#: fontconfig and theme files.
GTK_DATA_PREFIXES = ("gi_typelibs/", "gio_modules/", "lib/gdk-pixbuf", "share/", "etc/")
#: Python extension modules whose native libraries come from the desktop (PyGObject, dbus-python).
DESKTOP_EXTENSIONS = re.compile(r"^(gi/_gi(_cairo)?|_dbus_bindings|_dbus_glib_bindings)\.")
_SYSTEM_DIRS = ("/usr/lib", "/lib", "/usr/local/lib")


def unused_binary(dest: str) -> bool:
    """Binaries the collected packages ship but the app never loads."""
    name = Path(dest).name
    # The onnxruntime wheel carries its C API library (libonnxruntime.so, 35 MB) for C/C++
    # programs; the Python module has the runtime and the CPU provider built in and does not link
    # it. Plugin providers (CUDA, TensorRT, ...) are not in the CPU wheel; the 15 KB provider bridge
    # stays, or onnxruntime warns "Init provider bridge failed" on every start.
    if dest.startswith("onnxruntime/capi/") and name.startswith("libonnxruntime.so"):
        return True
    if dest.startswith("onnxruntime/capi/libonnxruntime_providers_") \
            and not name.startswith("libonnxruntime_providers_shared"):
        return True
    # The C++ runtime: manylinux wheels (onnxruntime, NumPy, Pillow) take libstdc++ and libgcc_s
    # from the system by policy, so every Linux that runs them has them (2.3 MB).
    if dest in ("libstdc++.so.6", "libgcc_s.so.1"):
        return True
    # NumPy's test-only extension modules (_multiarray_tests stays: numpy imports it).
    if dest.startswith("numpy/_core/") and name.startswith(("_simd.", "_umath_tests.",
                                                            "_rational_tests.",
                                                            "_operand_flag_tests.",
                                                            "_struct_ufunc_tests.")):
        return True
    return False


def _ldd(path: str) -> set[str]:
    """Real paths of the shared libraries `path` loads, transitively (as the loader finds them)."""
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=False).stdout
    except OSError:
        return set()
    found = set()
    for line in out.splitlines():
        match = re.search(r"=>\s*(/\S+)", line)
        if match:
            found.add(os.path.realpath(match.group(1)))
    return found


def _is_system(src: str) -> bool:
    return os.path.realpath(src).startswith(_SYSTEM_DIRS)


def desktop_libraries(binaries: list[tuple[str, str, str]]) -> set[str]:
    """Destinations of system libraries that only PyGObject/dbus-python need (GTK, GLib, D-Bus).

    Every other Python extension module in the bundle (the standard library's, NumPy's,
    onnxruntime's, Pillow's) and libpython are asked what they load; a system library none of
    them loads is part of the desktop stack, which the desktop provides.
    """
    needed: set[str] = set()
    for dest, src, kind in binaries:
        if (kind == "EXTENSION" and not DESKTOP_EXTENSIONS.match(dest)) \
                or Path(dest).name.startswith("libpython"):
            needed |= _ldd(src)
    return {dest for dest, src, kind in binaries
            if kind == "BINARY" and _is_system(src) and os.path.realpath(src) not in needed
            and not Path(dest).name.startswith("libpython")}


# --- NumPy without OpenBLAS ------------------------------------------------------------------

NOBLAS_SOURCE = Path(__file__).resolve().parent / "noblas.c"
_OPENBLAS = re.compile(r"^numpy\.libs/libscipy_openblas[^/]*\.so[^/]*$")


def _symbols(path: str, *flags: str) -> set[str]:
    out = subprocess.run(["nm", "-D", *flags, path], capture_output=True, text=True, check=True)
    return {line.split()[-1].split("@")[0] for line in out.stdout.splitlines() if line.strip()}


def _needed(path: str) -> set[str]:
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True)
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out.stdout))


def use_blas_stub(binaries: list, workdir: Path) -> set[str]:
    """Swap NumPy's OpenBLAS for a build of noblas.c, in place in `binaries`.

    Returns the destinations that are no longer needed (the Fortran runtime OpenBLAS links), or
    raises SystemExit when the stub cannot be built or does not define every symbol NumPy's
    extension modules import from OpenBLAS.
    """
    index = next((i for i, (dest, _src, kind) in enumerate(binaries)
                  if kind == "BINARY" and _OPENBLAS.match(dest)), None)
    if index is None:
        print("watch.spec: NumPy's OpenBLAS is not in the bundle; nothing to replace")
        return set()
    dest, src, kind = binaries[index]
    workdir.mkdir(parents=True, exist_ok=True)
    stub = workdir / Path(dest).name
    try:
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(stub),
                        str(NOBLAS_SOURCE)], check=True)
        provided = _symbols(str(stub), "--defined-only")
        from_openblas = _symbols(src, "--defined-only")
        wanted: set[str] = set()
        for other_dest, other_src, other_kind in binaries:
            if other_kind == "EXTENSION" and other_dest.startswith("numpy/"):
                wanted |= _symbols(other_src, "--undefined-only") & from_openblas
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"watch.spec: cannot build the BLAS stub ({exc}); install a C compiler "
                         "and binutils, or build with TEDDYWATCH_BUNDLE_BLAS=openblas") from None
    missing = sorted(wanted - provided)
    if missing:
        raise SystemExit(f"watch.spec: this NumPy imports BLAS/LAPACK symbols that "
                         f"packaging/noblas.c lacks: {', '.join(missing)}; add them there, or build "
                         "with TEDDYWATCH_BUNDLE_BLAS=openblas")
    binaries[index] = (dest, str(stub), kind)
    # Libraries only OpenBLAS needed (gfortran, and quadmath through it) go too.
    unused: set[str] = set()
    candidates = {Path(d).name: s for d, s, k in binaries
                  if k != "SYMLINK" and d.startswith("numpy.libs/") and not _OPENBLAS.match(d)}
    while True:
        still_needed: set[str] = set()
        for other_dest, other_src, other_kind in binaries:
            if other_kind != "SYMLINK" and Path(other_dest).name not in unused:
                still_needed |= _needed(other_src)
        newly = {name for name in candidates if name not in still_needed} - unused
        if not newly:
            break
        unused |= newly
    print(f"watch.spec: NumPy's OpenBLAS replaced by {stub.name} ({stub.stat().st_size} bytes, "
          f"{len(wanted)} symbols); also leaving out {', '.join(sorted(unused)) or 'nothing'}")
    return {d for d, _s, k in binaries if k != "SYMLINK" and Path(d).name in unused}
