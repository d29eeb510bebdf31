"""Play a user who corrects a kind of picture the model gets wrong, and measure what `learn` does.

    .venv/bin/python bench/teach.py [--data ../shared/data] [--seeds 5] [--tune]
        [--out bench/results/teach.json]

Scenarios (pictures from ../shared/data, split by file-name hash, salt `teach-bench`, into A: the
pictures the user sees and corrects (40%), B: a tuning set (30%) and C: the report set (30%)):

* `dogs, model shipped before`: the model teddywatch shipped before the current one (git
  ede615b), which called about half of all dogs a bear: the case of a user whose dog keeps coming
  back as `black`. The kind: every dog photo (truth `other`).
* `bears it confuses, current model`: the current default model on the black bears it finds
  grizzly-like and the grizzlies it finds black-like (the other label's probability >= 0.02).
* `dogs, current model`: the current default on every dog photo (it gets few wrong).

For each seed the user corrects the pictures of A the model gets wrong, in a random order; after
2, 5, 10 and 20 corrections the real `teddywatch learn` runs (teddywatch/teach/learn.py: example
copies, features through the onnx engine, fit, check, switch) and is timed. Reported, as served
(the learned version if `learn` switched to it, else the model as it was):
* the error rate on C's pictures of the kind;
* bears right and sure on the report set of the model card (the test split's 429 bears);
* the time `learn` took.
Answers on C and the report set are the model's own outputs passed through the learned adapter,
which is exactly what LearnedEngine serves (teddywatch/teach/engine.py).

`--tune` chooses FitSettings on B instead (bears kept measured on the check set, the valid
split), by the rule: the lowest mean error at 10 corrections whose bears on the check set fall
by at most 0.5 points. Needs the `[fastai]` extra (onnx, to add the features output to the old
model); exits 0 with a note when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from teddywatch.engines.onnx import OnnxEngine  # noqa: E402
from teddywatch.teach.adapter import Adapter, Anchors, FitSettings, checkset_path  # noqa: E402
from teddywatch.teach.corrections import CorrectionStore  # noqa: E402
from teddywatch.teach.learn import answered_right, compute_features, learn  # noqa: E402
from teddywatch.teach.record import correct_file  # noqa: E402
from teddywatch.teach.versions import ModelVersions  # noqa: E402
from teddywatch.training import data  # noqa: E402

STEPS = (2, 5, 10, 20)
SHIPPED_BEFORE = "ede615b"
WORK = ROOT / "build" / "teach"


@dataclass
class Scenario:
    name: str
    model: Path
    kind: Callable[[data.Item, dict], bool]  # (item, the model's probabilities by label)


def _part(item: data.Item) -> str:
    h = int(hashlib.sha256(f"teach-bench:{item.path.name}".encode()).hexdigest()[:8], 16) / 2**32
    return "A" if h < 0.4 else "B" if h < 0.7 else "C"


def old_model(items: list[data.Item]) -> Path:
    """The model shipped before, from git, with the features output, anchors and check set."""
    from teddywatch.training.anchors import write_sets
    from teddywatch.training.features_output import main as add_features

    target = WORK / "shipped-before" / "bears-int8.onnx"
    if not checkset_path(target).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".onnx", ".json"):
            blob = subprocess.run(["git", "-C", str(ROOT), "show",
                                   f"{SHIPPED_BEFORE}:models/bears-int8{suffix}"],
                                  check=True, capture_output=True).stdout
            target.with_suffix(suffix).write_bytes(blob)
        add_features([str(target)])
        write_sets(target, items)
    return target


def outputs(model: Path, items: list[data.Item]) -> tuple[np.ndarray, np.ndarray]:
    cache = WORK / f"{model.parent.name}-{model.stem}.features.npz"
    if cache.exists():
        with np.load(cache) as d:
            return d["p"], d["f"]
    p, f = compute_features(OnnxEngine(model), [it.path for it in items])
    np.savez(cache, p=p, f=f)
    return p, f


right = answered_right  # bears: the right label and sure; non-bears: `other` or unsure


def play(scenario: Scenario, items: list[data.Item], seeds: int, settings: FitSettings,
         evaluate_on: str = "C") -> dict:
    engine = OnnxEngine(scenario.model)
    labels, threshold = engine.labels, engine.default_threshold
    p, f = outputs(scenario.model, items)
    truth = np.array([labels.index(it.label) for it in items])
    ok = right(p, truth, labels, threshold)
    in_kind = np.array([scenario.kind(it, dict(zip(labels, row))) for it, row in zip(items, p)])
    part = np.array([_part(it) for it in items])
    pool = np.where(in_kind & (part == "A") & ~ok)[0]
    held = np.where(in_kind & (part == evaluate_on))[0]
    if evaluate_on == "C":
        bears = np.where((np.array([it.split for it in items]) == "test") & (truth != labels.index(
            "other")) & (part != "A"))[0]
        bear_p, bear_f, bear_t = p[bears], f[bears], truth[bears]
    else:  # tuning: bears of the check set (valid split), never the report set
        check = Anchors.load(checkset_path(scenario.model))
        keep = check.labels != labels.index("other")
        bear_p, bear_f, bear_t = check.probabilities[keep], check.features[keep], check.labels[keep]
    base = {"kind_error": float(1 - ok[held].mean()),
            "bears_right": float(right(bear_p, bear_t, labels, threshold).mean())}
    out = {"scenario": scenario.name, "model": engine.model_id, "kind_pictures": int(in_kind.sum()),
           "wrong_in_A": int(len(pool)), "held_out": int(len(held)), "before": base, "steps": {}}
    for k in STEPS:
        if k > len(pool):
            out["steps"][k] = None
            continue
        runs = []
        for seed in range(seeds):
            order = list(pool)
            random.Random(seed).shuffle(order)
            runs.append(_one_run(scenario.model, [items[i] for i in order[:k]], settings,
                                 p[held], f[held], truth[held], bear_p, bear_f, bear_t,
                                 labels, threshold))
        out["steps"][k] = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
    return out


def _one_run(model: Path, corrected: list[data.Item], settings: FitSettings, hp, hf, ht,
             bp, bf, bt, labels, threshold) -> dict:  # noqa: ANN001
    with tempfile.TemporaryDirectory(prefix="teddywatch-teach-") as tmp:
        store = CorrectionStore(Path(tmp) / "corrections")
        for item in corrected:
            correct_file(str(item.path), item.label, log_path=Path(tmp) / "results.csv",
                         labels=labels, store=store)
        report = learn(model, store=store, versions_root=Path(tmp) / "learned",
                       settings=settings)
        adapter: Adapter | None = ModelVersions(report.model, Path(tmp) / "learned").load(
            report.version) if report.used else None
    served = (lambda prob, feat: adapter.apply(prob, feat)) if adapter else (lambda prob, _: prob)
    return {"kind_error": float(1 - right(served(hp, hf), ht, labels, threshold).mean()),
            "bears_right": float(right(served(bp, bf), bt, labels, threshold).mean()),
            "used": float(report.used), "learn_seconds": report.seconds}


def scenarios(items: list[data.Item]) -> list[Scenario]:
    current = ROOT / "models" / "bears-int8.onnx"
    dog = lambda it, _: it.kind == "dog"  # noqa: E731
    confused = lambda it, p: ((it.label == "black" and p["grizzly"] >= 0.02)  # noqa: E731
                              or (it.label == "grizzly" and p["black"] >= 0.02))
    return [Scenario("dogs, model shipped before", old_model(items), dog),
            Scenario("bears it confuses, current model", current, confused),
            Scenario("dogs, current model", current, dog)]


def table(results: list[dict]) -> str:
    rows = ["| scenario | corrections | error on the kind (held out) | bears right and sure | "
            "learn used | learn time |", "|---|---|---|---|---|---|"]
    for r in results:
        b = r["before"]
        rows.append(f"| {r['scenario']} ({r['held_out']} held out) | 0 | "
                    f"{b['kind_error']:.1%} | {b['bears_right']:.1%} | | |")
        for k, s in r["steps"].items():
            if s is None:
                rows.append(f"| | {k} | (only {r['wrong_in_A']} wrong to correct) | | | |")
            else:
                rows.append(f"| | {k} | {s['kind_error']:.1%} | {s['bears_right']:.1%} | "
                            f"{s['used']:.0%} | {s['learn_seconds']:.2f} s |")
    return "\n".join(rows)


def tune(items: list[data.Item], seeds: int) -> FitSettings:
    scenario = scenarios(items)[0]
    best, best_error = FitSettings(), None
    ladders = ((3200.0, 1600.0, 800.0, 400.0, 200.0, 100.0, 50.0, 25.0, 10.0),)
    for l2, bear, steps, ladder in itertools.product((3e-1, 1e-1, 3e-2), (3.0, 10.0), (300, 600),
                                                     ladders):
        settings = replace(FitSettings(), l2=l2, bear_anchor_weight=bear, steps=steps,
                           correction_weights=ladder)
        r = play(scenario, items, seeds, settings, evaluate_on="B")
        s = r["steps"][10]
        drop = r["before"]["bears_right"] - s["bears_right"]
        print(f"{asdict(settings)}: error {r['before']['kind_error']:.3f} -> at 10 "
              f"{s['kind_error']:.3f}, bears drop {drop:.4f}", flush=True)
        if drop <= 0.005 and (best_error is None or s["kind_error"] < best_error):
            best, best_error = settings, s["kind_error"]
    print(f"chosen: {asdict(best)}")
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--tune", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "teach.json")
    a = ap.parse_args(argv)
    if not (a.data / "MANIFEST.tsv").exists():
        print(f"note: no data at {a.data}; nothing measured")
        return 0
    items = data.load(a.data)
    WORK.mkdir(parents=True, exist_ok=True)
    if a.tune:
        tune(items, a.seeds)
        return 0
    results = [play(s, items, a.seeds, FitSettings()) for s in scenarios(items)]
    print(table(results))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"settings": asdict(FitSettings()), "seeds": a.seeds,
                                 "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
