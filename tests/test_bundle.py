"""The frozen desktop app: watch.spec builds it small and torch-free, and it serves every command.

The bundle is built once per test session (about a minute) into a temporary folder, with the
same spec `make bundle` uses; each test then runs `dist/teddywatch/teddywatch` like a user would.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, REPO

sys.path.insert(0, str(REPO / "packaging"))
import bundle_check  # noqa: E402

pytestmark = pytest.mark.slow

FIXTURE_FILES = sorted(FIXTURES.glob("*.jpg"))


def _need_pyinstaller() -> None:
    pytest.importorskip("PyInstaller", reason="PyInstaller is not installed (the [bundle] extra); "
                                              "the desktop bundle cannot be built here")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/teddywatch built from watch.spec into a temporary folder."""
    _need_pyinstaller()
    root = tmp_path_factory.mktemp("bundle")
    proc = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--distpath", str(root / "dist"),
         "--workpath", str(root / "build"), str(REPO / "watch.spec")],
        cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, "PyInstaller failed:\n" + (proc.stdout + proc.stderr)[-4000:]
    folder = root / "dist" / "teddywatch"
    assert (folder / "teddywatch").is_file()
    return folder


def run_frozen(bundle: Path, *args: str, env: dict[str, str],
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bundle / "teddywatch"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=bundle.parent)


def expected_label(path: Path | str) -> str:
    return Path(path).stem.split("_")[0]


# --- the build ---------------------------------------------------------------------------------

@pytest.mark.timeout(1500)
def test_bundle_is_small_and_has_no_training_stack(bundle: Path) -> None:
    assert bundle_check.check(bundle) == [], bundle_check.report(bundle)
    internal = bundle / "_internal"
    assert (internal / "models" / "bears-int8.onnx").is_file()
    assert (internal / "models" / "bears-int8.json").is_file()
    assert (internal / "config.example.toml").is_file()


def test_desktop_entry_and_icon(bundle: Path) -> None:
    from PIL import Image

    entry = (bundle / "teddywatch.desktop").read_text(encoding="utf-8")
    assert entry.startswith("[Desktop Entry]\n")
    assert "\nExec=teddywatch run\n" in entry and "\nIcon=teddywatch\n" in entry
    with Image.open(bundle / "teddywatch.png") as icon:
        assert icon.format == "PNG" and icon.size == (256, 256)
    assert os.access(bundle / "install-desktop-entry.sh", os.X_OK)


def test_install_desktop_entry_points_at_the_bundle(bundle: Path, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path), HOME=str(tmp_path))
    subprocess.run(["sh", str(bundle / "install-desktop-entry.sh")], env=env, check=True,
                   capture_output=True, timeout=60)
    entry = (tmp_path / "applications" / "teddywatch.desktop").read_text(encoding="utf-8")
    assert f'\nExec="{bundle / "teddywatch"}" run\n' in entry
    assert (tmp_path / "icons" / "hicolor" / "256x256" / "apps" / "teddywatch.png").is_file()


# --- the commands ------------------------------------------------------------------------------

def test_classify_csv_labels_the_fixtures(bundle: Path, user_env: dict[str, str]) -> None:
    proc = run_frozen(bundle, "classify", "--format", "csv", *map(str, FIXTURE_FILES),
                      env=user_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no warnings from onnxruntime or a missing library
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [Path(row["path"]).name for row in rows] == [p.name for p in FIXTURE_FILES]
    for row in rows:
        assert row["label"] == expected_label(row["path"]), row
        assert row["model"].startswith("bears-int8.onnx"), row


def test_correct_and_learn_in_the_frozen_app(bundle: Path, user_env: dict[str, str],
                                            tmp_path: Path) -> None:
    """`learn` needs no torch: it fits with NumPy, here on the bundle's BLAS stand-in."""
    plush = FIXTURES / "other_plush.jpg"
    assert run_frozen(bundle, "correct", str(plush), "teddy", env=user_env).returncode == 0
    learned = run_frozen(bundle, "learn", env=user_env)
    assert learned.returncode == 0, learned.stdout + learned.stderr
    assert "+v1" in learned.stdout
    proc = run_frozen(bundle, "classify", "--format", "csv", str(plush),
                      str(FIXTURES / "black_1.jpg"), env=user_env)
    rows = {Path(r["path"]).name: r for r in csv.DictReader(io.StringIO(proc.stdout))}
    assert rows["other_plush.jpg"]["label"] == "teddy"
    assert rows["black_1.jpg"]["label"] == "black"
    assert rows["black_1.jpg"]["model"].endswith("+v1")


def test_classify_camera_sized_webp_and_progressive_jpeg(bundle: Path, user_env: dict[str, str],
                                                         tmp_path: Path) -> None:
    # The decoding shortcuts work frozen too: libwebp is found inside the bundle (the -v log
    # names it) and progressive JPEGs at 1/8 scale go through teddywatch.jpeg.
    from PIL import Image

    with Image.open(FIXTURES / "grizzly_1.jpg") as small:
        photo = small.convert("RGB").resize((2400, 1800), Image.BICUBIC)
    photo.save(tmp_path / "grizzly_webp.jpg", "WEBP", quality=90)  # a WebP named .jpg
    photo.save(tmp_path / "grizzly_progressive.jpg", "JPEG", quality=90, progressive=True)
    proc = run_frozen(bundle, "-v", "classify", "--format", "csv", str(tmp_path), env=user_env)
    assert proc.returncode == 0, proc.stderr
    assert "scaled while decoding by" in proc.stderr and "_internal" in proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [(Path(r["path"]).name, r["label"], r["status"]) for r in rows] == [
        ("grizzly_progressive.jpg", "grizzly", "ok"), ("grizzly_webp.jpg", "grizzly", "ok")]


def test_frozen_decoder_processes_stop_a_slow_file_and_classify_the_rest(
        bundle: Path, user_env: dict[str, str], tmp_path: Path) -> None:
    # The frozen executable is its own decoder process (--decoder-process): a file past the
    # time limit is killed there, the photos after it are classified, nothing falls back.
    from conftest import many_strip_tiff

    folder = tmp_path / "in"
    folder.mkdir()
    for path in FIXTURE_FILES[:4]:
        shutil.copy(path, folder / path.name)
    many_strip_tiff(folder / "black_3_slow.tif")  # sorted between the photos
    config = tmp_path / "config.toml"
    config.write_text("[decode]\ntime_limit_seconds = 0.5\n", encoding="utf-8")
    proc = run_frozen(bundle, "--config", str(config), "classify", "--format", "csv",
                      str(folder), env=user_env)
    assert proc.returncode == 1, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert [Path(r["path"]).name for r in rows] == sorted(
        [p.name for p in FIXTURE_FILES[:4]] + ["black_3_slow.tif"])
    for row in rows:
        if row["path"].endswith(".tif"):
            assert row["detail"].startswith("took longer than 0.5 s to decode"), row
        else:
            assert row["label"] == expected_label(row["path"]), row
    assert "own process instead" not in proc.stderr and "Traceback" not in proc.stderr


def test_config_commands_use_the_bundled_example(bundle: Path, user_env: dict[str, str],
                                                 tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    init = run_frozen(bundle, "--config", str(target), "config", "init", env=user_env)
    assert init.returncode == 0, init.stderr
    assert target.read_text(encoding="utf-8") == \
        (REPO / "config.example.toml").read_text(encoding="utf-8")
    check = run_frozen(bundle, "config", "check", str(target), env=user_env)
    assert check.returncode == 0 and "OK" in check.stdout, check.stderr
    show = run_frozen(bundle, "config", "show", env=user_env)
    assert show.returncode == 0 and "[model]" in show.stdout, show.stderr


@pytest.mark.parametrize("args", [("train", "{tmp}"), ("export", "{tmp}/learner.pkl")])
def test_train_and_export_need_the_fastai_extra(bundle: Path, user_env: dict[str, str],
                                                tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = run_frozen(bundle, *(a.format(tmp=tmp_path) for a in args), env=user_env)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "teddywatch[fastai]" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_autostart_status(bundle: Path, user_env: dict[str, str]) -> None:
    proc = run_frozen(bundle, "autostart", "status", env=user_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()


def _watch_config(tmp_path: Path) -> tuple[Path, Path, Path]:
    inbox, results = tmp_path / "inbox", tmp_path / "results.csv"
    inbox.mkdir()
    config = tmp_path / "watch.toml"
    config.write_text(f'[[watch]]\npath = "{inbox}"\n\n[log]\npath = "{results}"\n\n'
                      '[notify]\nenabled = false\n', encoding="utf-8")
    return config, inbox, results


def _wait_for_row(proc: subprocess.Popen[str], results: Path, name: str,
                  timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the app exited early:\n{proc.communicate()[1][-3000:]}"
        if results.exists():
            rows = [r for r in csv.DictReader(io.StringIO(results.read_text(encoding="utf-8")))
                    if Path(r["path"]).name == name]
            if rows:
                return rows[0]
        time.sleep(0.2)
    raise AssertionError(f"no row for {name} in {results} after {timeout} s")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        _out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _out, err = proc.communicate()
    return err


def test_run_headless_logs_a_row(bundle: Path, user_env: dict[str, str],
                                 tmp_path: Path) -> None:
    config, inbox, results = _watch_config(tmp_path)
    proc = subprocess.Popen([str(bundle / "teddywatch"), "--config", str(config), "run",
                             "--headless"], env=user_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        time.sleep(1.0)
        shutil.copy(FIXTURES / "teddy_1.jpg", inbox / "teddy_1.jpg")
        row = _wait_for_row(proc, results, "teddy_1.jpg")
    finally:
        err = _stop(proc)
    assert row["label"] == "teddy", row
    assert "Traceback" not in err, err


def test_run_with_the_tray_under_xvfb(bundle: Path, user_env: dict[str, str],
                                      tmp_path: Path) -> None:
    """The frozen tray starts against the desktop's GTK (Xvfb + a D-Bus session here)."""
    tools = [shutil.which(t) for t in ("xvfb-run", "dbus-run-session")]
    if not all(tools):
        if os.environ.get("TEDDYWATCH_REQUIRE_GUI"):
            pytest.fail("xvfb-run and dbus-run-session are needed for the frozen tray test")
        pytest.skip("xvfb-run or dbus-run-session is not installed")
    config, inbox, results = _watch_config(tmp_path)
    proc = subprocess.Popen(["xvfb-run", "-a", "dbus-run-session", "--", str(bundle / "teddywatch"),
                             "-v", "--config", str(config), "run"], env=user_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, start_new_session=True)
    try:
        time.sleep(2.0)
        shutil.copy(FIXTURES / "black_1.jpg", inbox / "black_1.jpg")
        row = _wait_for_row(proc, results, "black_1.jpg")
    finally:
        try:  # xvfb-run does not pass signals on: stop the whole session
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            _out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _out, err = proc.communicate()
    assert row["label"] == "black", row
    assert "Traceback" not in err, err
    # The menu needs GTK: the frozen app must reach the desktop's GTK, not fall back to X11.
    has_gi = subprocess.run([sys.executable, "-c", "import gi"], capture_output=True).returncode == 0
    if has_gi:
        assert "pystray backend: xorg" not in err, err[-3000:]


# --- the checks themselves (fast; no PyInstaller needed) --------------------------------------

def test_bundle_check_finds_the_training_stack(tmp_path: Path) -> None:
    folder = tmp_path / "teddywatch"
    for name in ("_internal/torch/__init__.py", "_internal/nvidia/cudnn/lib/libcudnn.so.9",
                 "_internal/libtorch_cpu.so", "_internal/fastai-2.8.12.dist-info/METADATA",
                 "_internal/onnxruntime/capi/x.so", "_internal/numpy/__init__.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    found = bundle_check.forbidden_in(folder)
    assert sorted(found) == sorted([
        "_internal/torch/__init__.py", "_internal/nvidia/cudnn/lib/libcudnn.so.9",
        "_internal/libtorch_cpu.so", "_internal/fastai-2.8.12.dist-info/METADATA"])
    assert any("training stack" in p for p in bundle_check.check(folder))
    assert bundle_check.check(folder, max_mb=0.000001)[0].startswith(f"{folder} is ")


def test_noblas_stub_matches_openblas(tmp_path: Path) -> None:
    """NumPy's products with packaging/noblas.c in place of OpenBLAS equal the real ones."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler: the bundle build needs one for the BLAS stub")
    import numpy

    site = tmp_path / "site"
    numpy_dir = Path(numpy.__file__).parent
    shutil.copytree(numpy_dir, site / "numpy", ignore=shutil.ignore_patterns("tests", "__pycache__"))
    libs = numpy_dir.parent / "numpy.libs"
    shutil.copytree(libs, site / "numpy.libs")
    (openblas,) = (site / "numpy.libs").glob("libscipy_openblas*.so*")
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o",
                    str(openblas), str(REPO / "packaging" / "noblas.c")], check=True)
    script = (
        "import sys, pickle, numpy as np\n"
        "rng = np.random.default_rng(0)\n"
        "out = {}\n"
        "for dt in (np.float32, np.float64, np.complex64, np.complex128):\n"
        "    def r(*s):\n"
        "        a = rng.standard_normal(s)\n"
        "        if np.issubdtype(dt, np.complexfloating): a = a + 1j * rng.standard_normal(s)\n"
        "        return a.astype(dt)\n"
        "    A, B, v, w = r(7, 5), r(5, 6), r(5), r(7)\n"
        "    out[dt.__name__] = [v.dot(v), np.vdot(v, v), A @ B, B.T @ A.T,\n"
        "        np.asfortranarray(A) @ np.asfortranarray(B), A @ v, w @ A, A.T @ w, A @ A.T,\n"
        "        A.T @ A, A[::2, ::2] @ B[::2, ::3], r(40, 30) @ r(30, 20), A.conj().T @ A,\n"
        "        np.tensordot(r(3, 4, 5), r(4, 5, 2), axes=([1, 2], [0, 1]))]\n"
        "pickle.dump((np.__file__, out), sys.stdout.buffer)\n")
    import pickle

    def results(pythonpath: str | None) -> tuple[str, dict]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env,
                              timeout=120, check=True)
        return pickle.loads(proc.stdout)

    stub_file, stub = results(str(site))
    real_file, real = results(None)
    assert stub_file.startswith(str(site)) and not real_file.startswith(str(site))
    for dtype, values in real.items():
        tol = 1e-4 if dtype in ("float32", "complex64") else 1e-10
        for index, (got, want) in enumerate(zip(stub[dtype], values)):
            assert numpy.allclose(got, want, rtol=tol, atol=tol), (dtype, index)
