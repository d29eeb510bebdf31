"""Config loading and validation, through the real CLI in a subprocess where users meet it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from teddywatch.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "teddywatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def check_fails(path: Path, env: dict[str, str], *needles: str) -> str:
    """`config check` exits 2 with one readable message naming the file and every needle."""
    proc = run_cli("config", "check", str(path), env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(path) in proc.stderr
    for needle in needles:
        assert needle in proc.stderr
    return proc.stderr


def test_example_config_is_valid(user_env: dict[str, str]) -> None:
    proc = run_cli("config", "check", str(REPO / "config.example.toml"), env=user_env)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_every_example_key_is_a_real_key(tmp_path: Path) -> None:
    """Uncommenting every documented key must give a valid config: the docs cannot drift."""
    key_line = re.compile(r"^#? ?(\[\[?\w+\]\]?|\w+ = .+?)(\s{2,}#.*)?$")
    lines = [m.group(1) for line in (REPO / "config.example.toml").read_text().splitlines()
             if (m := key_line.match(line))]
    text = "\n".join(lines).replace('"~/models/export.pkl"', '"~/export.pkl"')
    raw = tomllib.loads(text)  # uncommented, the example is still valid TOML
    assert {"watch", "model", "log", "notify", "sort", "service", "gallery"} <= raw.keys()
    path = tmp_path / "uncommented.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.model.unsure_threshold == 0.6
    assert len(config.watch) == 2


def test_unknown_key_suggests_the_closest(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, "[model]\nunsure_treshold = 0.5\n")
    check_fails(path, user_env, "model.unsure_treshold", "did you mean 'model.unsure_threshold'")


def test_unknown_section(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, "[notfy]\nenabled = false\n")
    check_fails(path, user_env, "notfy", "did you mean 'notify'")


def test_wrong_type(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, '[notify]\nenabled = "yes"\n')
    check_fails(path, user_env, "notify.enabled", "expected true or false", "'yes'")


def test_threshold_outside_0_1(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, "[model]\nunsure_threshold = 1.5\n")
    check_fails(path, user_env, "model.unsure_threshold", "from 0 to 1", "1.5")


def test_watch_path_that_is_a_file(tmp_path: Path, user_env: dict[str, str]) -> None:
    a_file = tmp_path / "photo.jpg"
    a_file.write_bytes(b"x")
    path = write(tmp_path, f'[[watch]]\npath = "{a_file}"\n')
    check_fails(path, user_env, "watch[0].path", "a folder, but this is a file")


def test_watch_without_path(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, "[[watch]]\nrecursive = true\n")
    check_fails(path, user_env, "watch[0].path", "the folder to watch")


def test_bad_choice(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, '[sort]\nmode = "teleport"\n')
    check_fails(path, user_env, "sort.mode", '"move" or "copy"', "teleport")


def test_several_problems_are_reported_together(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, '[model]\nengine = "tensorflow"\nthreads = -1\n[log]\npath = 3\n')
    message = check_fails(path, user_env, "3 problems", "model.engine", "model.threads", "log.path")
    assert message.count("\n  - ") == 3


def test_broken_toml_names_line_and_column(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, "[model]\nengine = auto\n")
    check_fails(path, user_env, "not valid TOML", "line 2", "column")


def test_missing_file(tmp_path: Path, user_env: dict[str, str]) -> None:
    missing = tmp_path / "nope.toml"
    proc = run_cli("--config", str(missing), "config", "show", env=user_env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"config file not found: {missing}" in proc.stderr


def test_sorting_into_a_watched_folder_is_refused(tmp_path: Path,
                                                  user_env: dict[str, str]) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = write(tmp_path, f'[[watch]]\npath = "{inbox}"\nrecursive = true\n'
                           f'[sort]\nenabled = true\ndestination = "{inbox}/sorted"\n')
    check_fails(path, user_env, "sort.destination", "outside watch[0].path")


def test_watching_a_folder_that_sorting_fills_is_refused(tmp_path: Path,
                                                         user_env: dict[str, str]) -> None:
    # The default model's labels come from its metadata: sorted/black receives black bears.
    sorted_dir = tmp_path / "sorted"
    for name in ("black", "unsure", "inbox"):
        (sorted_dir / name).mkdir(parents=True)
    config = (f'[[watch]]\npath = "{sorted_dir}/inbox"\n'
              f'[sort]\nenabled = true\ndestination = "{sorted_dir}"\n')
    fine = write(tmp_path, config)  # a folder beside the label folders is fine
    proc = run_cli("--config", str(fine), "config", "check", env=user_env)
    assert proc.returncode == 0, proc.stderr
    for name in ("black", "unsure"):
        path = write(tmp_path, config.replace("/inbox", f"/{name}"))
        check_fails(path, user_env, "watch[0].path", "a folder that sorting does not fill",
                    f"{sorted_dir}/{name}")


def test_paths_expand_home_vars_and_relative(tmp_path: Path, user_env: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PHOTOS", str(tmp_path / "photos"))
    path = write(tmp_path, '[[watch]]\npath = "$PHOTOS/bears"\n[[watch]]\npath = "~/in"\n'
                           '[log]\npath = "logs/results.csv"\n')
    config = load_config(path)
    assert config.watch[0].path == tmp_path / "photos" / "bears"
    assert config.watch[1].path == Path(user_env["HOME"]) / "in"
    assert config.log.path == tmp_path / "logs" / "results.csv"


def test_show_fills_in_defaults(tmp_path: Path, user_env: dict[str, str]) -> None:
    path = write(tmp_path, '[notify]\nsummarise_after = 7\n')
    proc = run_cli("config", "show", "--config", str(path), env=user_env)
    assert proc.returncode == 0, proc.stderr
    shown = tomllib.loads(proc.stdout)
    assert shown["notify"]["summarise_after"] == 7
    assert shown["sort"]["mode"] == "move"
    assert shown["log"]["path"].endswith("teddywatch/results.csv")
    assert shown["watch"][0]["path"] == str(Path(user_env["HOME"]) / "Pictures" / "teddywatch")


def test_init_writes_example_and_never_overwrites(user_env: dict[str, str]) -> None:
    target = Path(user_env["XDG_CONFIG_HOME"]) / "teddywatch" / "config.toml"
    first = run_cli("config", "init", env=user_env)
    assert first.returncode == 0, first.stderr
    assert target.read_text() == (REPO / "config.example.toml").read_text()
    target.write_text("# mine\n")
    second = run_cli("config", "init", env=user_env)
    assert second.returncode == 0
    assert "already exists" in second.stdout
    assert target.read_text() == "# mine\n"
    # The user's config is the active one from now on.
    (Path(user_env["HOME"]) / "Pictures" / "teddywatch").mkdir(parents=True)  # else a warning
    assert run_cli("config", "check", env=user_env).stdout.strip() == f"{target}: OK"


def test_config_error_is_an_exception_in_process(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"watch\[0\]\.poll_seconds: expected a positive number"):
        load_config(write(tmp_path, '[[watch]]\npath = "/tmp"\npoll_seconds = 0\n'))


def test_gallery_port_is_zero_or_an_unprivileged_port(tmp_path: Path) -> None:
    for port in (80, 65536, -1):
        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, f"[gallery]\nport = {port}\n"))
        assert str(caught.value) == (f"{tmp_path / 'teddywatch.toml'}: gallery.port: expected 0 "
                                     f"(any free port) or a port number from 1024 to 65535 "
                                     f"(got {port})")
    for port in (0, 1024, 8765):
        assert load_config(write(tmp_path, f"[gallery]\nport = {port}\n")).gallery.port == port
    assert load_config(write(tmp_path, "[gallery]\nserve = false\n")).gallery.serve is False


def test_version_and_help(user_env: dict[str, str]) -> None:
    assert run_cli("--version", env=user_env).stdout.startswith("teddywatch ")
    proc = run_cli("--help", env=user_env)
    assert proc.returncode == 0
    for command in ("config", "classify", "train", "export"):
        assert command in proc.stdout
