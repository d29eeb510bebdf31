"""No value of a wrong type in any key gives a traceback: every key of config.example.toml (and
every section) is fed an int, a string, a bool, a list and a table in turn, through the real CLI,
and each must give one line naming the file and the key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from conftest import REPO
from teddywatch.config import ConfigError, load_config

WRONG = {"int": "5", "str": '"x"', "bool": "true", "list": "[1, 2]", "table": "{ a = 1 }"}


def example_keys() -> list[tuple[str, str, object]]:
    """(section, key, documented value) for every key the example documents, commented or not."""
    key_line = re.compile(r"^#? ?(\[\[?\w+\]\]?|\w+ = .+?)(\s{2,}#.*)?$")
    lines = [m.group(1) for line in (REPO / "config.example.toml").read_text().splitlines()
             if (m := key_line.match(line))]
    raw = tomllib.loads("\n".join(lines))
    keys = []
    for section, table in raw.items():
        for key, value in (table[0] if isinstance(table, list) else table).items():
            keys.append((section, key, value))
    return keys


def kind_of(value: object) -> str:
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list",
            dict: "table"}[type(value)]


def cases() -> list[tuple[str, str, str]]:
    out = []
    for section, key, value in example_keys():
        right = kind_of(value)
        for wrong, text in WRONG.items():
            if wrong == right and right != "list":
                continue
            if right == "float" and wrong == "int":
                continue  # a whole number is a fine float
            out.append((section, key, wrong))
    return out


def config_text(section: str, key: str, text: str, inbox: Path) -> str:
    if section == "watch":
        body = f'path = "{inbox}"\n' if key != "path" else ""
        return f"[[watch]]\n{body}{key} = {text}\n"
    return f'[[watch]]\npath = "{inbox}"\n[{section}]\n{key} = {text}\n'


@pytest.mark.parametrize("section,key,wrong", cases())
def test_a_wrong_type_is_one_line_naming_file_and_key(tmp_path: Path, section: str, key: str,
                                                     wrong: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = tmp_path / "config.toml"
    path.write_text(config_text(section, key, WRONG[wrong], inbox), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message, message
    dotted = f"watch[0].{key}" if section == "watch" else f"{section}.{key}"
    assert message.startswith(f"{path}: {dotted}: expected "), message


SECTIONS = ("watch", "model", "log", "notify", "sort", "service", "gallery")


@pytest.mark.parametrize("section,wrong", [
    (section, wrong) for section in SECTIONS for wrong in sorted(WRONG)
    if wrong != "table" and not (section == "watch" and wrong == "list")])  # the right types
def test_a_section_of_a_wrong_type_is_one_line(tmp_path: Path, section: str, wrong: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"{section} = {WRONG[wrong]}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: {section}: expected "), str(caught.value)
    assert "\n" not in str(caught.value)


def test_through_the_cli_no_traceback_for_any_case(tmp_path: Path, user_env) -> None:
    """The same configs through `teddywatch config check`, a few per process to keep it quick:
    exit 2, one line on stderr, no traceback."""
    import subprocess
    import sys

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    script = ("import sys\nfrom teddywatch.cli import main\n"
              "sys.exit(main(['config', 'check', sys.argv[1]]))\n")
    for index, (section, key, wrong) in enumerate(cases()[::7]):
        path = tmp_path / f"c{index}.toml"
        path.write_text(config_text(section, key, WRONG[wrong], inbox), encoding="utf-8")
        proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                              text=True, env=user_env, timeout=60)
        assert proc.returncode == 2, (section, key, wrong, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"error: {path}: ")
