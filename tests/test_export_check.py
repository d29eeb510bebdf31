"""`teddywatch export` compares the export with `learn.predict` and refuses one that disagrees."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the [fastai] extra (torch)")
pytest.importorskip("fastai", reason="needs the [fastai] extra (fastai)")

from conftest import FIXTURES  # noqa: E402
from teddywatch import training  # noqa: E402
from teddywatch.training.export_check import ExportDisagrees, default_images  # noqa: E402

FILES = sorted(FIXTURES.glob("*.jpg"))


def _learner(folder: Path) -> Path:
    import torch
    from fastai.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner

    torch.manual_seed(0)
    dls = ImageDataLoaders.from_lists(FIXTURES, FILES, [p.stem.split("_")[0] for p in FILES],
                                      valid_pct=0.3, seed=0, item_tfms=Resize(128), bs=4,
                                      num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    path = folder / "export.pkl"
    learn.export(path)
    return path


def test_the_built_in_check_photos_ship_in_the_package() -> None:
    images = default_images()
    assert len(images) == 3 and all("teddywatch/checkimages" in p.as_posix() for p in images)
    assert sum(p.stat().st_size for p in images) < 150_000


def test_an_onnx_model_with_changed_weights_is_refused_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    pkl = _learner(tmp_path)
    (tmp_path / "export.onnx").write_bytes(b"the model served until now")
    real = torch.onnx.export

    def export_changed(model, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        model = copy.deepcopy(model)
        with torch.no_grad():
            last = [p for p in model.parameters() if p.dim() == 2][-1]  # the head's last Linear
            last.add_(torch.randn_like(last) * 0.5)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_changed)
    with pytest.raises(ExportDisagrees, match="does not answer as the learner does") as info:
        training.export(pkl)
    assert "engine = \"fastai\"" in str(info.value) and "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.onnx", "export.pkl"]
    assert (tmp_path / "export.onnx").read_bytes() == b"the model served until now"


def test_check_files_are_added_to_the_built_in_photos(tmp_path: Path) -> None:
    pkl = _learner(tmp_path)
    rep = training.export(pkl, check_images=FILES[:2])
    # Three shipped photos, the camera-sized one made from them, the two given.
    assert rep.checked_images == 6 and rep.max_abs_diff <= 0.01
    assert sorted(os.listdir(tmp_path)) == ["export.json", "export.onnx", "export.pkl"]
