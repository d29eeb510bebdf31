"""The `teddywatch` command: parses arguments, wires parts together, maps errors to exit codes.

Known user mistakes (a bad config, a model that cannot load) print one paragraph and exit 2;
Ctrl-C exits 130; anything else is a bug: one line here, the traceback in the log file (and on
stderr with -v).
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from teddywatch import __version__, resources
from teddywatch.cli_app import APP_COMMANDS
from teddywatch.cli_teach import TEACH_COMMANDS
from teddywatch.cli_common import (EXIT_BUG, EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED,
                                   EXIT_USER, UsageError, active_config)
from teddywatch.config import IMAGE_PATTERNS, Config, ConfigError
from teddywatch.csvcells import printable
from teddywatch.files import why_unreadable
from teddywatch.engines import ENGINES, ModelError
from teddywatch.logsetup import setup_logging
from teddywatch.output import OUTPUT_FORMATS, report_problems
from teddywatch.progress import Progress
from teddywatch.results import ERROR, FileId, Job, Result

log = logging.getLogger(__name__)

# --- entry point ---------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # -v and --config may come before or after the command; SUPPRESS keeps a later parser from
    # resetting what an earlier one read, so fill in the defaults here.
    args.verbose = getattr(args, "verbose", False)
    args.config = getattr(args, "config", None)
    log_file = setup_logging(verbose=args.verbose)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USER
    try:
        return args.handler(args)
    except (ConfigError, ModelError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `teddywatch classify ... | head` closed our stdout
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        log.debug("unexpected error", exc_info=True)
        where = f"; details in {log_file}" if log_file else ""
        print(f"teddywatch failed: {type(exc).__name__}: {exc}{where}", file=sys.stderr)
        if args.verbose:
            raise
        return EXIT_BUG


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show debug messages and full tracebacks")
    common.add_argument("--config", type=Path, metavar="FILE", default=argparse.SUPPRESS,
                        help=f"config file (default: {resources.default_config_path()})")
    parser = argparse.ArgumentParser(
        prog="teddywatch", parents=[common],
        description="Watch folders for new images and classify each one with a fast.ai model.")
    parser.add_argument("--version", action="version", version=f"teddywatch {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(commands, common)
    return parser


# --- classify ------------------------------------------------------------------------------

def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, metavar="M",
                        help="a .onnx model (with its .json) or a fast.ai export .pkl "
                             "(default: [model] path, else the bundled bear model)")
    parser.add_argument("--engine", choices=ENGINES, help="default: [model] engine")
    parser.add_argument("--code", type=Path, action="append", metavar="FILE", default=[],
                        help="a Python file defining functions the .pkl learner needs "
                             "(its labelling function); repeatable")
    parser.add_argument("--threads", type=int, metavar="N", help="engine threads (0 = automatic)")


CLASSIFY_EXIT_CODES = """exit codes:
  0    every file was classified (also when a folder held none: "no images found in DIR")
  1    some file could not be classified (its error row says why; the rest were classified)
  2    usage, config or model error: nothing was classified
  130  interrupted (Ctrl-C)"""


def _add_classify(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    classify = commands.add_parser(
        "classify", parents=[common], help="classify image files or folders and print the results",
        description="Classify image files, and the image files in folders, and print one result "
                    "per file. A file that cannot be classified (missing, not an image, a FIFO "
                    "or a broken link) gets an error row and is listed at the end on stderr; "
                    "the other files are classified all the same.",
        epilog=CLASSIFY_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    classify.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    _add_model_options(classify)
    classify.add_argument("--format", choices=("table", "csv", "json"), default="table",
                          help="table for people; csv or json (JSON Lines) for scripts")
    classify.add_argument("--top", type=int, default=1, metavar="K",
                          help="also show the K best labels with their probabilities")
    classify.add_argument("--threshold", type=float, metavar="P",
                          help="unsure below this confidence (default: config, else the model's)")
    classify.add_argument("--batch-size", type=int, metavar="N",
                          help="images classified at once (onnx: two half batches)")
    classify.set_defaults(handler=cmd_classify)


def open_engine(args: argparse.Namespace, config: Config, threads: int | None = None):
    """Load the engine named by the command line, falling back to the config.

    `threads` overrides both (classify's choice when it runs two batches at once)."""
    from teddywatch.engines import load_engine

    model = args.model or config.model.path
    if model.suffix.lower() in (".pkl", ".pth") and args.model is None:
        log.debug("using the configured fast.ai learner %s", model)
    if threads is None:
        threads = config.model.threads if args.threads is None else args.threads
    from teddywatch.teach.engine import with_learning

    # The version `teddywatch learn` made from the user's corrections, if any (teach/engine.py).
    return with_learning(load_engine(model, args.engine or config.model.engine, threads=threads,
                                     code=tuple(args.code) or config.model.code))


def cmd_classify(args: argparse.Namespace) -> int:
    if args.top < 1:
        raise UsageError("--top must be 1 or more")
    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise UsageError("--threshold must be between 0 and 1")
    config = active_config(args)
    from teddywatch import decoders
    from teddywatch.imaging import set_max_megapixels
    set_max_megapixels(config.decode.max_megapixels)
    decoders.set_time_limit(config.decode.time_limit_seconds)
    problems: list[str] = []
    empty: list[Path] = []
    files = list(iter_image_files(args.paths, problems, empty))
    writer = OUTPUT_FORMATS[args.format](sys.stdout, args.top)
    for folder in empty:
        print(f"no images found in {printable(str(folder))}", file=sys.stderr)
    if not files:  # nothing to classify: no model to load, no table to frame
        return _report_folders(problems)
    batch_size = args.batch_size or config.model.batch_size
    in_flight = _batches_in_flight(args, config, len(files), batch_size)
    per_call = max(1, batch_size // in_flight)  # the same number of images in hand either way
    # Two batches at once, each on its own share of the cores: onnxruntime runs one while the
    # other is decoded (6% more web images/s, 16% more camera photos/s on 2 cores).
    threads = max(1, (os.cpu_count() or 2) // in_flight) if in_flight > 1 else None
    decoders.start()  # the decoder processes import Pillow while the model loads
    engine = open_engine(args, config, threads=threads)
    log.debug("classify: %d files in batches of %d, %d batch(es) in flight", len(files),
              per_call, in_flight)
    threshold = _first_set(args.threshold, config.model.unsure_threshold, engine.default_threshold)
    from teddywatch.worker import classify_batch, map_in_order

    def classify_chunk(paths: Sequence[Path]) -> list[Result]:
        jobs, unreadable = _jobs_for(paths, engine.model_id)
        classified = iter(classify_batch(engine, [job for job in jobs if job], threshold))
        return [next(classified) if job else failed for job, failed in zip(jobs, unreadable)]

    failed: list[Result] = []
    writer.start()
    with Progress(len(files)) as progress:
        for results in map_in_order(classify_chunk, _chunks(files, per_call), in_flight):
            with progress.above():  # the bar is wiped while rows are printed
                for result in results:
                    writer(result)
            failed.extend(result for result in results if result.status == ERROR)
            progress.advance(len(results))
    engine.close()
    decoders.stop()
    writer.finish()
    report_problems(failed, len(files), sys.stderr)
    return _report_folders(problems) if problems else \
        (EXIT_SOME_FAILED if failed else EXIT_OK)


def _report_folders(problems: Sequence[str]) -> int:
    """Folders that could not be listed, one line each; exit 1 if there were any."""
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_SOME_FAILED if problems else EXIT_OK


def _batches_in_flight(args: argparse.Namespace, config: Config, files: int,
                       batch_size: int) -> int:
    """2 for many files on the onnx engine with automatic threads (its sessions may run from
    two threads at once), else 1."""
    from teddywatch.engines import pick_engine

    if (os.cpu_count() or 1) < 2 or files <= 2 * batch_size:
        return 1
    if (args.threads if args.threads is not None else config.model.threads) != 0:
        return 1  # the user chose the threads; keep to one model call at a time
    try:
        kind = pick_engine(args.model or config.model.path, args.engine or config.model.engine)
    except ModelError:
        return 1  # open_engine reports it
    return 2 if kind == "onnx" else 1


def _first_set(*values: float | None) -> float:
    return next(v for v in values if v is not None)


def iter_image_files(paths: Iterable[Path], problems: list[str],
                     empty: list[Path] | None = None) -> Iterator[Path]:
    """Paths given are taken as they are; folders are walked for image names, sorted.

    A folder that cannot be listed is added to `problems` (one line each) and skipped; a folder
    that holds no image names at all is added to `empty`."""
    import fnmatch

    def image_name(name: str) -> bool:
        return any(fnmatch.fnmatch(name.lower(), p) for p in IMAGE_PATTERNS)

    for path in paths:
        if not path.is_dir():
            yield path  # whatever it is (missing, a FIFO, a broken link): it gets its row
            continue
        found, problems_before = 0, len(problems)
        for root, dirs, names in os.walk(path, onerror=lambda exc: problems.append(
                f"{printable(str(exc.filename))}: cannot list the folder: "
                f"{exc.strerror or exc}")):
            dirs.sort()
            # Links to folders are not followed (nor walked twice): named like an image,
            # they get an error row saying so, as in a watched folder.
            linked = [d for d in dirs if os.path.islink(os.path.join(root, d))]
            for name in sorted(names + linked):
                if image_name(name):
                    found += 1
                    yield Path(root) / name
        if not found and len(problems) == problems_before and empty is not None:
            empty.append(path)


def _jobs_for(paths: Sequence[Path], model_id: str
              ) -> tuple[list[Job | None], list[Result | None]]:
    """For each path, in order, a Job, or (when it cannot even be looked at) an error Result."""
    jobs: list[Job | None] = []
    unreadable: list[Result | None] = []
    for path in paths:
        try:
            jobs.append(Job(FileId.of(path)))
            unreadable.append(None)
        except OSError as exc:
            reason = "no such file or folder" if exc.errno == errno.ENOENT and \
                not os.path.islink(path) else why_unreadable(path, exc)
            jobs.append(None)
            unreadable.append(Result.failed(str(path), reason, model=model_id))
    return jobs, unreadable


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]




# --- train and export ----------------------------------------------------------------------

def _add_train(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    train = commands.add_parser(
        "train", parents=[common],
        help="train a fast.ai classifier from a folder per label (needs the [fastai] extra)")
    train.add_argument("data_dir", type=Path, metavar="DATA_DIR",
                       help="a folder with one sub-folder of images per label")
    train.add_argument("--arch", default="efficientnet_lite0",
                       help="efficientnet_lite0 (ImageNet weights shipped offline), resnet18 or "
                            "resnet34 (random init: nothing is downloaded)")
    train.add_argument("--epochs", type=int, default=None, metavar="N")
    train.add_argument("--negatives", type=Path, metavar="DIR",
                       help="pictures that show none of the labels, learnt as 'other' (and the "
                            "grouped ImageNet head keeps the rest of the world 'other' too)")
    train.add_argument("--corrections", action="store_true",
                       help="also train on your corrections ('teddywatch correct', the tray, the "
                            "gallery): a full fast.ai fine-tune, where 'teddywatch learn' only "
                            "adapts the model in the lean runtime")
    train.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                       help="where the learner, ONNX model, metadata and reports go")
    train.set_defaults(handler=cmd_train)


def _add_export(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    export = commands.add_parser(
        "export", parents=[common],
        help="convert a fast.ai learner .pkl to ONNX + metadata (needs the [fastai] extra)")
    export.add_argument("learner", type=Path, metavar="LEARNER.pkl")
    export.add_argument("--out", type=Path, metavar="M.onnx",
                        help="default: the learner's name with .onnx")
    export.add_argument("--code", type=Path, action="append", metavar="FILE", default=[],
                        help="a Python file defining functions the learner needs; repeatable")
    export.add_argument("--check", type=Path, action="append", metavar="IMAGE", default=[],
                        help="more images to compare the export with learn.predict on (always: "
                             "a few built-in photos); repeatable")
    export.set_defaults(handler=cmd_export)


def _training_module():
    import importlib.util

    try:
        missing = [name for name in ("fastai", "torch") if importlib.util.find_spec(name) is None]
        if missing:
            raise ImportError(f"no module named {', '.join(missing)}")
        from teddywatch.engines.fastai import quiet_torch_warnings

        quiet_torch_warnings()
        from teddywatch import training
    except ImportError as exc:
        raise ModelError(
            f"this command needs fast.ai and PyTorch, which this installation lacks ({exc}). "
            f"Install the extra: {resources.pip_install_command('fastai')}. "
            "The frozen desktop app serves models but does not train or export them.") from None
    return training


def cmd_train(args: argparse.Namespace) -> int:
    if not args.data_dir.is_dir():
        raise UsageError(f"{args.data_dir}: not a folder; expected one sub-folder per label")
    training = _training_module()
    options: dict[str, object] = {"arch": args.arch, "negatives_dir": args.negatives}
    if args.corrections:
        from teddywatch.teach.corrections import CorrectionStore

        active = [c for c in CorrectionStore().active() if c.example and c.example.is_file()]
        if not active:
            raise UsageError("--corrections: no corrections yet ('teddywatch correct FILE LABEL')")
        options["corrections"] = [(c.example, c.label) for c in active]
        print(f"training on {len(active)} correction{'s' * (len(active) != 1)} too")
    if args.epochs is not None:
        options["epochs"] = args.epochs
    report = training.train(args.data_dir, args.out, **options)
    print(f"validation accuracy {report.valid_accuracy:.1%} on {report.n_valid} images "
          f"({report.n_train} trained on, {report.n_holdout} held out); "
          f"unsure threshold {report.unsure_threshold:g}")
    for label, path in (("learner", report.learner), ("onnx model", report.onnx),
                        ("metadata", report.metadata), ("confusion matrix", report.confusion_png),
                        ("top losses", report.top_losses_png)):
        if path is not None:
            print(f"  {label}: {path}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    """Exit 2 (a ModelError) when the learner cannot be served lean: nothing is written then."""
    training = _training_module()
    training.export(args.learner, args.out, check_images=args.check, code=args.code)
    return EXIT_OK


COMMANDS: list[Callable[[argparse._SubParsersAction, argparse.ArgumentParser], None]] = [
    APP_COMMANDS[0], _add_classify, *TEACH_COMMANDS, _add_train, _add_export, *APP_COMMANDS[1:],
]
