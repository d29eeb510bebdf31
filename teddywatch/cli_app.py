"""The commands about the installed app: config, paths, run, autostart. Wiring only: each
handler reads the config and calls the module that does the work.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

from teddywatch import resources
from teddywatch.cli_common import EXIT_OK, EXIT_USER, UsageError, active_config
from teddywatch.config import Config, ConfigError, find_config, load_config, to_toml

log = logging.getLogger(__name__)

# --- config --------------------------------------------------------------------------------

def _add_config(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    config = commands.add_parser("config", parents=[common], help="check, show or create the config")
    actions = config.add_subparsers(title="actions", metavar="ACTION")
    check = actions.add_parser("check", parents=[common], help="validate a config file")
    check.add_argument("file", nargs="?", type=Path, help="config file (default: the active one)")
    check.set_defaults(handler=cmd_config_check)
    show = actions.add_parser("show", parents=[common],
                              help="print the effective config, defaults filled in")
    show.set_defaults(handler=cmd_config_show)
    init = actions.add_parser("init", parents=[common],
                              help="write the documented example config (never overwrites)")
    init.set_defaults(handler=cmd_config_init)
    config.set_defaults(handler=lambda args: _print_help(config))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return EXIT_USER


def cmd_config_check(args: argparse.Namespace) -> int:
    """Validate the file, then what would fail or surprise at run time (teddywatch.preflight):
    the model loads and classifies a test picture, folders exist, files can be written."""
    from teddywatch import preflight

    path = args.file or find_config(args.config)
    if path is None:
        print(f"no config file at {resources.default_config_path()}; built-in defaults apply "
              "(create one with 'teddywatch config init')")
    config = load_config(path)
    source = path or "built-in defaults"
    findings = preflight.check(config)
    for finding in findings:
        print(finding.line(source), file=sys.stderr)
    errors = sum(1 for f in findings if f.level == preflight.ERROR)
    if errors:
        print(f"{source}: {errors} problem{'s' if errors > 1 else ''} would stop "
              "'teddywatch run'", file=sys.stderr)
        return EXIT_USER
    warnings = len(findings)
    print(f"{source}: OK" + (f" ({warnings} warning{'s' if warnings > 1 else ''})"
                             if warnings else ""))
    return EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    print(to_toml(active_config(args)))
    return EXIT_OK


def cmd_config_init(args: argparse.Namespace) -> int:
    target = args.config or resources.default_config_path()
    if target.exists():
        print(f"{target} already exists; leaving it as it is "
              "(check it with 'teddywatch config check')")
        return EXIT_OK
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "x", encoding="utf-8") as handle:  # "x": never overwrite, even in a race
        handle.write(resources.example_config_text())
    print(f"wrote {target}")
    return EXIT_OK


# --- paths ---------------------------------------------------------------------------------

def _add_paths(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    paths = commands.add_parser("paths", parents=[common],
                                help="print every file and folder teddywatch writes")
    paths.add_argument("--folders", action="store_true",
                       help="only the folders holding nothing but teddywatch's own files, one a "
                            "line (what 'make uninstall PURGE=1' removes)")
    paths.set_defaults(handler=cmd_paths)


def cmd_paths(args: argparse.Namespace) -> int:
    from teddywatch.appfiles import app_files, app_folders

    if args.folders:
        for folder in app_folders():
            print(folder)
        return EXIT_OK
    config_path = find_config(args.config)
    files = app_files(load_config(config_path), config_path)
    width = max(len(f.what) for f in files) + 1
    for f in files:
        note = f"  ({f.note})" if f.note else ""
        print(f"{f.what + ':':<{width}} {f.path}{note}")
    return EXIT_OK


# --- run -----------------------------------------------------------------------------------

def _add_run(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    run = commands.add_parser("run", parents=[common],
                              help="watch the configured folders and classify new images")
    run.add_argument("--headless", action="store_true",
                     help="no tray icon (servers, scripts); stop with Ctrl-C or SIGTERM")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from teddywatch.headless import run_headless
    from teddywatch.ledger import LedgerError
    from teddywatch.sinks.sort import SortError

    from teddywatch.preflight import large_watches

    try:
        config = active_config(args)
    except ConfigError as exc:
        if not args.headless:  # started from a desktop or at login: say it there too
            from teddywatch import trayapp

            trayapp.run_failed(exc, find_config(args.config))
        raise  # main() prints "error: ..." and exits 2
    _create_default_inbox(config)
    # Said first, before the catch-up classifies what is already there (`config check` says the
    # same); the tray also shows it as a notification.
    notices = [finding.line(config.source or "built-in defaults")
               for finding, _ in large_watches(config)]
    for notice in notices:
        log.warning("%s", notice)
    try:
        if not args.headless:
            from teddywatch import trayapp  # falls back to headless, in one line, without a display

            return trayapp.run(config, notices=notices)
        return run_headless(config)
    except (LedgerError, SortError) as exc:  # user-fixable, like a config error
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER


def _create_default_inbox(config: Config) -> None:
    """With no config file, teddywatch watches ~/Pictures/teddywatch: make it, so it just works.

    Folders named in a config file are never created: a missing one may be an unplugged drive,
    which the watcher reports and retries.
    """
    inbox = resources.default_inbox()
    if config.source is None and not inbox.exists():
        inbox.mkdir(parents=True, exist_ok=True)
        print(f"created {inbox}: drop images there (change folders with 'teddywatch config init')",
              file=sys.stderr)


# --- autostart -----------------------------------------------------------------------------

def _add_autostart(commands: argparse._SubParsersAction,
                   common: argparse.ArgumentParser) -> None:
    autostart = commands.add_parser("autostart", parents=[common],
                                    help="start the tray app at login: on, off or status")
    autostart.add_argument("action", choices=("on", "off", "status"))
    autostart.set_defaults(handler=cmd_autostart)


def cmd_autostart(args: argparse.Namespace) -> int:
    from teddywatch import autostart

    try:
        if args.action == "on":
            # Keep an explicit --config, so login starts the same setup.
            extra = ["--config", str(args.config.absolute())] if args.config else []
            state = autostart.enable(extra)
        elif args.action == "off":
            state = autostart.disable()
        else:
            state = autostart.status()
    except autostart.AutostartError as exc:
        raise UsageError(str(exc)) from None
    print(state.describe())
    return EXIT_OK


APP_COMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    _add_config, _add_paths, _add_run, _add_autostart,
]
