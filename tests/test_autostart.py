"""Start at login: the XDG autostart file (written, parsed back, removed), the macOS plist, the
frozen-app command, and `teddywatch autostart on|off|status`."""

from __future__ import annotations

import configparser
import plistlib
import sys
from pathlib import Path

import pytest

from teddywatch import autostart
from teddywatch.cli import main


@pytest.fixture
def home(home: Path, monkeypatch) -> Path:
    """conftest's private home, on the XDG (Linux) code path whatever runs the tests."""
    monkeypatch.setattr(sys, "platform", "linux")
    return home


def unquote_exec(value: str) -> list[str]:
    """Parse an Exec value as the XDG spec says: string unescaping, then the quoting rules."""
    value = value.replace("\\\\", "\\")
    args, current, quoted, escape, started = [], "", False, False, False
    for char in value:
        if escape:
            current, escape = current + char, False
        elif quoted and char == "\\":
            escape = True
        elif char == '"':
            quoted, started = not quoted, True
        elif char == " " and not quoted:
            if current or started:
                args.append(current)
            current, started = "", False
        else:
            current += char
    if current or started:
        args.append(current)
    return [arg.replace("%%", "%") for arg in args]


def read_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def test_on_writes_a_desktop_file_that_runs_this_python_and_off_removes_it(home: Path) -> None:
    target = home / "config" / "autostart" / "teddywatch.desktop"
    assert autostart.status().enabled is False
    odd_config = home / 'my "odd" $config 100%.toml'
    state = autostart.enable(["--config", str(odd_config)])
    assert state.enabled and state.where == str(target) and target.exists()
    entry = read_entry(target)
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    assert unquote_exec(entry["Exec"]) == [sys.executable, "-m", "teddywatch", "run",
                                           "--config", str(odd_config)]
    assert Path(entry["Icon"]).read_bytes().startswith(b"\x89PNG")
    assert autostart.disable().enabled is False and not target.exists()
    assert autostart.disable().enabled is False  # already off: nothing to do, no error


def test_a_frozen_app_starts_itself(home: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/teddy watch/teddywatch")
    autostart.enable()
    entry = read_entry(autostart.desktop_file_path())
    assert entry["Exec"] == '"/opt/teddy watch/teddywatch" run'


def test_macos_uses_a_launch_agent(home: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    state = autostart.enable()
    plist = home / "home" / "Library" / "LaunchAgents" / f"{autostart.MAC_LABEL}.plist"
    assert state.enabled and state.where == str(plist)
    loaded = plistlib.loads(plist.read_bytes())
    assert loaded["RunAtLoad"] is True
    assert loaded["ProgramArguments"] == [sys.executable, "-m", "teddywatch", "run"]
    assert autostart.disable().enabled is False and not plist.exists()


def test_windows_without_a_registry_says_so(home: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "winreg", None)  # this Python has no winreg
    with pytest.raises(autostart.AutostartError, match="registry"):
        autostart.enable()


def test_cli_on_status_off(home: Path, capsys) -> None:
    target = home / "config" / "autostart" / "teddywatch.desktop"
    config = home / "teddy.toml"
    assert main(["autostart", "status"]) == 0
    assert capsys.readouterr().out == f"start at login is off ({target})\n"
    assert main(["--config", str(config), "autostart", "on"]) == 0
    assert capsys.readouterr().out == f"start at login is on ({target})\n"
    assert unquote_exec(read_entry(target)["Exec"])[-2:] == ["--config", str(config)]
    assert main(["autostart", "status"]) == 0
    assert "is on" in capsys.readouterr().out
    assert main(["autostart", "off"]) == 0
    assert capsys.readouterr().out == f"start at login is off ({target})\n"
    assert not target.exists()


def test_cli_reports_an_unwritable_autostart_folder(home: Path, capsys) -> None:
    (home / "config" / "autostart").write_text("a file where the folder should be")
    assert main(["autostart", "on"]) == 2
    assert "cannot write" in capsys.readouterr().err
