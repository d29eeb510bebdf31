"""`config check` finds what would fail or surprise at run time, through the real CLI: the real
default model is loaded and run on a test picture, real folders and files are probed, and `run`
says the same image count first, before it classifies what is already there."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURES, REPO, run_cli
from teddywatch.config import WatchConfig
from teddywatch.preflight import MANY_IMAGES, count_images


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def inbox_of(tmp_path: Path, images: int = 0) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for index in range(images):  # counting never opens a file: empty files will do
        (inbox / f"IMG_{index:05}.jpg").touch()
    return inbox


def check(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = run_cli("config", "check", str(path), env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_a_good_config_loads_the_model_and_says_ok(tmp_path: Path, user_env) -> None:
    path = write(tmp_path, f'[[watch]]\npath = "{inbox_of(tmp_path)}"\n')
    proc = check(path, user_env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"{path}: OK\n", "")


def test_a_model_that_is_not_there_fails_the_check(tmp_path: Path, user_env) -> None:
    path = write(tmp_path, f'[[watch]]\npath = "{inbox_of(tmp_path)}"\n'
                           f'[model]\npath = "{tmp_path}/nope.onnx"\n')
    proc = check(path, user_env)
    assert proc.returncode == 2
    assert f"error: {path}: model.path: {tmp_path}/nope.onnx: model file not found" in proc.stderr
    assert proc.stderr.endswith(f"{path}: 1 problem would stop 'teddywatch run'\n")


def test_a_broken_model_file_fails_the_check_without_a_traceback(tmp_path: Path,
                                                                 user_env) -> None:
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not a network" * 100)
    shutil.copy(REPO / "models" / "bears-int8.json", model.with_suffix(".json"))
    path = write(tmp_path, f'[[watch]]\npath = "{inbox_of(tmp_path)}"\n'
                           f'[model]\npath = "{model}"\n')
    proc = check(path, user_env)
    assert proc.returncode == 2
    assert f"error: {path}: model.path: " in proc.stderr and str(model) in proc.stderr


def test_a_missing_watched_folder_is_a_warning(tmp_path: Path, user_env) -> None:
    path = write(tmp_path, f'[[watch]]\npath = "{tmp_path}/usb-drive/DCIM"\n')
    proc = check(path, user_env)
    assert proc.returncode == 0
    assert proc.stdout == f"{path}: OK (1 warning)\n"
    assert proc.stderr == (f"warning: {path}: watch[0].path: {tmp_path}/usb-drive/DCIM does not "
                           "exist (yet); teddywatch watches it once it appears\n")


def test_unwritable_results_log_and_gallery_fail_the_check(tmp_path: Path, user_env) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    # The gallery lives in the data folder: put that under a file, where nothing can be made.
    env = {**user_env, "XDG_DATA_HOME": str(a_file / "share")}
    path = write(tmp_path, f'[[watch]]\npath = "{inbox_of(tmp_path)}"\n'
                           '[log]\npath = "/sys/teddywatch/results.csv"\n')
    proc = check(path, env)
    assert proc.returncode == 2
    assert (f"error: {path}: log.path: cannot write the results log "
            "/sys/teddywatch/results.csv: /sys: Permission denied") in proc.stderr
    assert (f"error: {path}: gallery.enabled: cannot write the gallery page "
            f"{a_file}/share/teddywatch/gallery.html: {a_file} is a file, not a folder"
            ) in proc.stderr
    assert "2 problems would stop" in proc.stderr
    # Turning the gallery off clears that one.
    path.write_text(path.read_text() + "[gallery]\nenabled = false\n")
    proc = check(path, env)
    assert "gallery" not in proc.stderr and "1 problem would stop" in proc.stderr


def test_a_folder_with_thousands_of_images_is_flagged_with_the_count(tmp_path: Path,
                                                                     user_env) -> None:
    inbox = inbox_of(tmp_path, MANY_IMAGES + 1)
    (inbox / "notes.txt").touch()
    (inbox / "IMG_99999.jpg.part").touch()  # a partial download is not counted
    path = write(tmp_path, f'[[watch]]\npath = "{inbox}"\n')
    proc = check(path, user_env)
    assert proc.returncode == 0 and proc.stdout == f"{path}: OK (1 warning)\n"
    assert proc.stderr.startswith(f"warning: {path}: watch[0].path: {inbox} (not recursive) "
                                  f"already holds {MANY_IMAGES + 1:,} images; every one not yet "
                                  "in the results log will be classified.")
    # skip_existing: nothing already there is classified, so nothing to say.
    path.write_text(path.read_text() + "skip_existing = true\n")
    assert check(path, user_env).stdout == f"{path}: OK\n"
    # One fewer image is not "more than a few thousand".
    (inbox / "IMG_00000.jpg").unlink()
    assert count_images(WatchConfig(path=inbox)).count == MANY_IMAGES


def test_a_recursive_watch_of_home_or_root_is_flagged_whatever_the_count(tmp_path: Path,
                                                                         user_env) -> None:
    home = Path(user_env["HOME"])
    (home / "Pictures").mkdir()
    shutil.copy(FIXTURES / "teddy_1.jpg", home / "Pictures" / "a.jpg")
    path = write(tmp_path, '[[watch]]\npath = "~"\nrecursive = true\n'
                           '[[watch]]\npath = "/"\nrecursive = true\n')
    proc = check(path, user_env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"warning: {path}: watch[0].path: your home folder (recursive) "
                               "already holds 1 images;")
    assert lines[1].startswith(f"warning: {path}: watch[1].path: the whole disk (recursive) "
                               "already holds ")
    assert proc.stdout == f"{path}: OK (2 warnings)\n"
    # Not recursive: the home folder's own files only, and none are images.
    path.write_text('[[watch]]\npath = "~"\n')
    assert check(path, user_env).stdout == f"{path}: OK\n"


def test_run_says_the_count_first_before_classifying(tmp_path: Path, user_env) -> None:
    inbox = inbox_of(tmp_path, MANY_IMAGES + 5)
    path = write(tmp_path, f'[[watch]]\npath = "{inbox}"\n[notify]\nenabled = false\n'
                           f'[log]\npath = "{tmp_path}/results.csv"\n')
    expected = check(path, user_env).stderr.splitlines()[0]
    env = {k: v for k, v in user_env.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen([sys.executable, "-m", "teddywatch", "--config", str(path), "run",
                             "--headless"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    seen: list[str] = []
    try:
        while not seen or ("watching 1 folder" not in seen[-1] and seen[-1]):
            seen.append(proc.stderr.readline())
    finally:
        proc.send_signal(signal.SIGINT)
        seen.append(proc.communicate(timeout=60)[1])
    assert seen[0].rstrip("\n") == expected, "".join(seen)
    assert "watching 1 folder" in "".join(seen) and proc.returncode == 0
