"""`make run`'s set-up as a new user meets it: which Python the Makefile picks, the `teddywatch`
link in ~/.local/bin and `make uninstall`, each run through the real Makefile in a temp HOME.

The run venv here is a real venv whose `teddywatch` script starts this checkout with the test's
Python (a pip install of the lean runtime would take minutes); everything after that, the link,
a new shell finding the command, autostart and uninstall, is the real thing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"


def fake_python(folder: Path, name: str, version: str | None) -> Path:
    """A `python3.x` on PATH: version None is a real one (this test's), else an old one that
    answers the version check as that version would (or a shim that cannot start, for "")."""
    path = folder / name
    if version is None:
        path.symlink_to(sys.executable)
        return path
    if version == "":
        path.write_text("#!/bin/sh\necho 'pyenv: python3.12: command not found' >&2\nexit 127\n")
    else:
        path.write_text(f"#!/bin/sh\ncase \"$*\" in *print*version_info*) echo {version}; exit 0;; "
                        f"esac\nexit 1\n")
    path.chmod(0o755)
    return path


def find_python(path_dirs: list[Path], *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": ":".join(map(str, path_dirs)), "HOME": "/nonexistent"}
    return subprocess.run(["/bin/sh", str(REPO / "packaging" / "find-python.sh"), *args],
                          capture_output=True, text=True, env=env, timeout=60)


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args],
                          capture_output=True, text=True, env=env, timeout=120)


# --- which Python ------------------------------------------------------------------------------

def test_finds_a_newer_python_when_python3_is_old_and_3_11_is_absent(tmp_path: Path) -> None:
    """Ubuntu 24.04's case: no python3.11, an old python3 first on PATH, python3.12 works."""
    fake = tmp_path / "bin"
    fake.mkdir()
    fake_python(fake, "python3", "3.10.12")
    fake_python(fake, "python3.11", "")  # a pyenv shim for a version that is not selected
    good = fake_python(fake, "python3.12", None)
    proc = find_python([fake])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(good)


def test_no_new_enough_python_says_what_was_tried_and_how_to_pick(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    old = fake_python(fake, "python3", "3.10.12")
    proc = find_python([fake])
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{old} (3.10.12)" in proc.stderr
    assert "make run PYTHON=" in proc.stderr and "apt install python3" in proc.stderr


def test_make_uses_the_python_it_finds_and_takes_another_by_name(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    fake_python(fake, "python3", "3.10.12")
    fake_python(fake, "python3.11", "3.10.12")
    good = fake_python(fake, "python3.13", None)
    env = {"PATH": f"{fake}:{SYSTEM_PATH}", "HOME": str(tmp_path)}
    proc = make("which-python", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(good)
    # PYTHON=... picks another; one too old is refused before any venv is made.
    assert make("which-python", f"PYTHON={sys.executable}", env=env).stdout.strip() == \
        sys.executable
    old = make("setup-run", f"PYTHON={fake / 'python3'}", f"RUN_VENV={tmp_path / 'venv'}",
               env=env)
    assert old.returncode != 0
    assert "is not Python 3.11 or newer (3.10.12)" in old.stderr
    assert not (tmp_path / "venv").exists()


# --- the link and uninstall --------------------------------------------------------------------

@pytest.fixture
def run_venv(tmp_path: Path) -> Path:
    """A real venv standing in for .venv-run, already 'installed' (its stamp is newer than
    pyproject.toml, so make does not rebuild it); its teddywatch runs this checkout."""
    venv = tmp_path / "venv-run"  # (make cannot have a space in a target; HOME has one)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = venv / "bin" / "teddywatch"
    script.write_text(f"#!/bin/sh\nPYTHONPATH='{REPO}' exec '{sys.executable}' -m teddywatch "
                      "\"$@\"\n")
    script.chmod(0o755)
    (venv / ".installed").touch()
    return venv


def user(tmp_path: Path, path: str) -> dict[str, str]:
    home = tmp_path / "my home"  # a space: the scripts quote every path
    home.mkdir(exist_ok=True)
    return {"HOME": str(home), "PATH": path, "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "XDG_STATE_HOME": str(home / ".local" / "state"),
            "XDG_PICTURES_DIR": str(home / "Pictures")}


def new_shell(env: dict[str, str], command: str) -> subprocess.CompletedProcess[str]:
    """A login shell with the PATH a new terminal gets: ~/.local/bin first, then the system."""
    fresh = {**env, "PATH": f"{env['HOME']}/.local/bin:{SYSTEM_PATH}"}
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=fresh,
                          timeout=120, cwd=env["HOME"])


def test_install_links_the_command_and_uninstall_removes_what_it_made(
        tmp_path: Path, run_venv: Path) -> None:
    env = user(tmp_path, SYSTEM_PATH)  # ~/.local/bin not on PATH yet, as on a fresh account
    home = Path(env["HOME"])
    link = home / ".local" / "bin" / "teddywatch"
    proc = make("install", f"RUN_VENV={run_venv}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink() and link.resolve() == (run_venv / "bin" / "teddywatch").resolve()
    assert f"linked {link} -> {run_venv}/bin/teddywatch" in proc.stdout
    assert f"warning: {home}/.local/bin is not on your PATH" in proc.stdout

    # A new shell, in another folder, finds it; what the README and the app say then works.
    assert new_shell(env, "teddywatch --version").stdout.startswith("teddywatch ")
    init = new_shell(env, "teddywatch config init && teddywatch config check")
    assert init.returncode == 0, init.stderr
    config = home / ".config" / "teddywatch" / "config.toml"
    assert f"{config}: OK" in init.stdout
    on = new_shell(env, "teddywatch autostart on")
    assert on.returncode == 0, on.stderr
    entry = home / ".config" / "autostart" / "teddywatch.desktop"
    assert entry.exists()
    (home / ".local" / "share" / "teddywatch").mkdir(parents=True, exist_ok=True)

    proc = make("uninstall", f"RUN_VENV={run_venv}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert not link.exists() and not link.is_symlink()
    assert not entry.exists() and not run_venv.exists()
    assert f"removed {link}" in proc.stdout and f"removed {run_venv}" in proc.stdout
    assert "kept your config and data (remove them with 'make uninstall PURGE=1')" in proc.stdout
    assert f"  {config.parent}\n" in proc.stdout
    assert config.exists()  # the user's config stays
    assert new_shell(env, "command -v teddywatch").returncode != 0


def test_uninstall_purge_removes_config_and_data_but_not_pictures(
        tmp_path: Path, run_venv: Path) -> None:
    env = user(tmp_path, SYSTEM_PATH)
    home = Path(env["HOME"])
    assert make("install", f"RUN_VENV={run_venv}", env=env).returncode == 0
    made = [home / ".config" / "teddywatch", home / ".local" / "share" / "teddywatch",
            home / ".local" / "state" / "teddywatch" / "log"]
    for folder in made:
        folder.mkdir(parents=True)
        (folder / "something").write_text("x")
    inbox = home / "Pictures" / "teddywatch"
    inbox.mkdir(parents=True)
    (inbox / "photo.jpg").write_bytes(b"x")
    proc = make("uninstall", "PURGE=1", f"RUN_VENV={run_venv}", env=env)
    assert proc.returncode == 0, proc.stderr
    for folder in made[:2] + [made[2].parent]:
        assert not folder.exists(), proc.stdout
        assert f"removed {folder}" in proc.stdout
    assert (inbox / "photo.jpg").exists()
    assert "watched and sorted pictures were not touched" in proc.stdout


def test_install_with_local_bin_on_path_says_it_works(tmp_path: Path, run_venv: Path) -> None:
    env = user(tmp_path, "")
    env["PATH"] = f"{env['HOME']}/.local/bin:{SYSTEM_PATH}"
    proc = make("install", f"RUN_VENV={run_venv}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "'teddywatch' works in any shell now" in proc.stdout
    assert "warning" not in proc.stdout


def test_a_teddywatch_that_is_not_our_link_is_left_alone(tmp_path: Path, run_venv: Path) -> None:
    env = user(tmp_path, SYSTEM_PATH)
    theirs = Path(env["HOME"]) / ".local" / "bin" / "teddywatch"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("#!/bin/sh\necho pip --user's teddywatch\n")
    proc = make("install", f"RUN_VENV={run_venv}", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"note: left {theirs} alone" in proc.stdout
    assert theirs.read_text().startswith("#!/bin/sh\necho pip")
    proc = make("uninstall", f"RUN_VENV={run_venv}", env=env)
    assert proc.returncode == 0 and theirs.exists()


def test_readme_first_lines_are_the_make_commands() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert lines[1].startswith("make run ") and lines[2].startswith("make test ")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert "python3.11" not in makefile  # any 3.11+ (packaging/find-python.sh)
    for target in ("run:", "test:", "install:", "uninstall:"):
        assert f"\n{target}" in makefile
    assert os.access(REPO / "packaging" / "find-python.sh", os.R_OK)


def test_install_hints_name_this_python_and_this_checkout(tmp_path: Path) -> None:
    """From a checkout, 'pip install teddywatch[fastai]' would look for a package on PyPI: the
    app names the command that adds the extra to the installation it runs from."""
    from teddywatch import resources

    command = resources.pip_install_command("fastai")
    assert command == f"{sys.executable} -m pip install -e '{REPO}[fastai]'"
    assert resources.pip_install_command("linux-desktop").endswith(f"'{REPO}[linux-desktop]'")
    # A runtime without fastai (make run's lean one), simulated by hiding the modules.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nclass Hide:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('fastai', 'torch'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Hide())\n")
    env = {**os.environ, "PYTHONPATH": f"{hide}:{REPO}", "HOME": str(tmp_path)}
    for args in (["train", str(tmp_path)], ["export", "x.pkl"]):
        proc = subprocess.run([sys.executable, "-m", "teddywatch", *args], capture_output=True,
                              text=True, env=env, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"Install the extra: {command}." in proc.stderr


def test_paths_prints_every_file_the_app_writes(tmp_path: Path) -> None:
    """`teddywatch paths` names each file from the functions the writers use, and the README's
    table says the same for Linux."""
    env = user(tmp_path, SYSTEM_PATH)
    home = Path(env["HOME"])
    proc = subprocess.run([sys.executable, "-m", "teddywatch", "paths"], capture_output=True,
                          text=True, env={**env, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    shown = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    shown = {k.strip(): v.strip().split("  (")[0] for k, v in shown.items()}
    assert shown["config"] == f"{home}/.config/teddywatch/config.toml"
    assert shown["results log"] == f"{home}/.local/share/teddywatch/results.csv"
    assert shown["gallery"] == f"{home}/.local/share/teddywatch/gallery.html"
    assert shown["app log"] == f"{home}/.local/state/teddywatch/log/teddywatch.log"
    assert shown["start at login"] == f"{home}/.config/autostart/teddywatch.desktop"
    assert shown["watched folder"] == f"{home}/Pictures/teddywatch"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for key in ("config", "results log", "gallery", "app log", "start at login"):
        assert "`" + shown[key].replace(str(home), "~") + "`" in readme, key
    # `paths --folders` is what `make uninstall PURGE=1` removes: the app's own folders only.
    folders = subprocess.run([sys.executable, "-m", "teddywatch", "paths", "--folders"],
                             capture_output=True, text=True, timeout=60,
                             env={**env, "PYTHONPATH": str(REPO)}).stdout.split("\n")
    assert folders[:3] == [f"{home}/.config/teddywatch", f"{home}/.local/share/teddywatch",
                           f"{home}/.local/state/teddywatch"]
