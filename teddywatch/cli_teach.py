"""The commands that teach the model: `correct` and `learn`. Wiring only: teddywatch/teach/ does
the work; a user's mistake is one line and exit 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from teddywatch.cli_common import EXIT_OK, EXIT_USER, UsageError, active_config
from teddywatch.config import Config
from teddywatch.teach.engine import learned_name


def _add_correct(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    correct = commands.add_parser(
        "correct", parents=[common], help="say a result was wrong and give the right label",
        description="Keep FILE as an example of LABEL (a small copy goes into the data folder, "
                    "a 'corrected' row into the results log). 'teddywatch learn' then learns "
                    "from the corrections.")
    correct.add_argument("file", type=Path, metavar="FILE")
    correct.add_argument("label", nargs="?", metavar="LABEL",
                         help="the right label: one of the model's labels, 'other' included")
    correct.add_argument("--undo", action="store_true", help="withdraw FILE's correction")
    correct.set_defaults(handler=cmd_correct)


def _add_learn(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    learn = commands.add_parser(
        "learn", parents=[common], help="learn from the corrections (seconds, no torch)",
        description="Fit the corrections into a new version of the model and use it, unless it "
                    "answers the model's check pictures worse than the shipped model. "
                    "classify and a running service use the version in use at once.")
    what = learn.add_mutually_exclusive_group()
    what.add_argument("--undo", action="store_true", help="go back to the version used before")
    what.add_argument("--status", action="store_true",
                      help="show the corrections and the versions, change nothing")
    learn.set_defaults(handler=cmd_learn)


def _labels(config: Config) -> tuple[str, ...]:
    from teddywatch.engines.onnx import read_metadata

    model = config.model.path
    if model.suffix.lower() == ".onnx":
        return tuple(read_metadata(model)["labels"])
    from teddywatch.engines import load_engine

    return tuple(load_engine(model, config.model.engine, code=config.model.code).labels)


def cmd_correct(args: argparse.Namespace) -> int:
    from teddywatch.teach.corrections import CorrectionError
    from teddywatch.teach.record import correct_file, undo_correction

    config = active_config(args)
    path = os.path.abspath(args.file)
    try:
        if args.undo:
            if args.label:
                raise UsageError("--undo takes the file only")
            withdrawn = undo_correction(path, log_path=config.log.path)
            if withdrawn is None:
                raise UsageError(f"{path}: has no correction to undo")
            print(f"{path}: correction to {withdrawn.label} withdrawn; "
                  "'teddywatch learn' makes a version without it")
            return EXIT_OK
        if not args.label:
            raise UsageError(f"give the right label: teddywatch correct FILE LABEL "
                             f"(one of {', '.join(_labels(config))})")
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such file")
        correction = correct_file(path, args.label, log_path=config.log.path,
                                  labels=_labels(config))
    except CorrectionError as exc:
        raise UsageError(str(exc)) from None
    said = f" (it said {correction.was})" if correction.was else ""
    print(f"{path}: corrected to {correction.label}{said}; kept as an example in "
          f"{correction.example.parent.parent}. Run 'teddywatch learn' to learn from it.")
    return EXIT_OK


def cmd_learn(args: argparse.Namespace) -> int:
    from teddywatch.engines import ModelError
    from teddywatch.teach.learn import LearnError, learn
    from teddywatch.teach.versions import ModelVersions

    config = active_config(args)
    model = config.model.path
    if args.status or args.undo:
        versions = ModelVersions(_model_id(model))
        if args.undo:
            step = versions.undo()
            if step is None:
                print("already using the shipped model; nothing to undo")
                return EXIT_USER
            print(f"now classifying with {learned_name(versions.model_id, step[1])} "
                  f"(was {learned_name(versions.model_id, step[0])})")
            return EXIT_OK
        return _status(versions)
    try:
        report = learn(model)
    except (LearnError, ModelError) as exc:
        raise UsageError(str(exc)) from None
    for line in report.lines():
        print(line)
    return EXIT_OK if report.used else EXIT_USER


def _model_id(model: Path) -> str:
    from teddywatch.engines.onnx import read_metadata

    sha = read_metadata(model).get("sha256", "")
    return f"{model.name}@{sha[:8]}" if sha else model.name


def _status(versions) -> int:  # noqa: ANN001
    from teddywatch.teach.corrections import CorrectionStore

    active = CorrectionStore().active()
    print(f"{len(active)} correction{'s' * (len(active) != 1)}:")
    for c in active:
        print(f"  {c.path}: {c.label}" + (f" (was {c.was})" if c.was else ""))
    learned = versions.versions()
    print(f"learned versions: {', '.join(f'v{v}' for v in learned) or 'none'}; in use: "
          f"{learned_name(versions.model_id, versions.current())}")
    return EXIT_OK


TEACH_COMMANDS = [_add_correct, _add_learn]
