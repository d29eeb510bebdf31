"""`teddywatch export` through the real CLI: a user's vision_learner becomes ONNX that agrees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import FIXTURES, run_cli

pytest.importorskip("fastai", reason="export needs the [fastai] extra")


def tiny_learner(folder: Path) -> Path:
    """A resnet18 vision_learner trained for a couple of batches on the fixtures, exported."""
    import torch
    from fastai.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner

    torch.manual_seed(0)
    files = sorted(FIXTURES.glob("*.jpg"))
    dls = ImageDataLoaders.from_lists(FIXTURES, files, [p.stem.split("_")[0] for p in files],
                                      valid_pct=0.3, seed=0, item_tfms=Resize(128), bs=4,
                                      num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.fit(1, 1e-3)
    learn.export(folder / "export.pkl")
    return folder / "export.pkl"


def test_export_writes_onnx_and_checks_both_engines(tmp_path: Path,
                                                    user_env: dict[str, str]) -> None:
    learner = tiny_learner(tmp_path)
    out = tmp_path / "served" / "pets.onnx"
    proc = run_cli("export", str(learner), "--out", str(out), env=user_env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "torch.jit.script" not in proc.stderr and "FutureWarning" not in proc.stderr
    assert "checked against learn.predict on 4 images: same label on every one" in proc.stdout
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["resize"]["method"] == "crop" and meta["input"]["size"] == [128, 128]

    # The exported model then serves `classify` with the lean engine.
    proc = run_cli("classify", str(FIXTURES / "teddy_1.jpg"), "--model", str(out),
                   "--format", "json", env=user_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["label"] in meta["labels"]


def test_export_of_a_missing_learner_is_a_user_error(tmp_path: Path,
                                                     user_env: dict[str, str]) -> None:
    proc = run_cli("export", str(tmp_path / "nope.pkl"), env=user_env, timeout=300)
    assert proc.returncode == 2
    assert "learner file not found" in proc.stderr and "Traceback" not in proc.stderr
