"""The shared image data set and how the default model splits it: by source, not by file.

`../shared/data/MANIFEST.tsv` names every file's label, source repository and kind of picture.
Pictures from one source look alike (one student's web search, one Kaggle set), so a score on
held-out files of a source that was trained on says little. The split here puts whole sources on
the test side, wherever a kind has a source big enough for it:

* test (never trained on, never used to choose anything): every file of `TEST_SOURCES`, plus a
  fixed 30% of the ImageNet sample photos by file-name hash. That set has one photo per ImageNet
  class, so its test part holds classes the fine-tune never saw; it is the only source of people,
  food, rooms and vehicles, so it cannot be held out whole. The one test fixture taken from a
  training source (a raccoon) is on the test side too.
* validation (choosing thresholds, temperature and variants): a fixed 25% of the remaining files
  by file-name hash.
* train: the rest.

Only the standard library here: the judge and tests import it without torch.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

BEARS = ("black", "grizzly", "teddy")
LABELS = (*BEARS, "other")

#: Whole sources held out for the test split (see the module docstring).
TEST_SOURCES = (
    "HuangYin0514/fastai",                 # 366 bears from another student's search
    "collinswm/Fastai",                    # 34 bears
    "madihafarhana21/bear-classifier",     # 5 bears
    "BachNgoH/test-deep-learning",         # 716 Kaggle cats and dogs, 17 bears
    "ezfibuilds/NPC-Thought-Starter-Generator",  # 180 Wikimedia photos of animal species
    "softmatic/vision-data",               # 48 scanned receipts
    "thaimeo03/Stuffed-Animal-Shop",       # plush toys and teddies from a shop site
    "pjreddie/darknet",                    # 7 sample photos
)
#: Files copied into tests/fixtures from a source the model trains on: never trained on.
FIXTURE_FILES = ("66696cadbfaf.jpg",)  # tests/fixtures/other_raccoon.jpg
#: Split by file-name hash inside the source: one photo per ImageNet class.
IMAGENET_SAMPLE = "EliSchwartz/imagenet-sample-images"
IMAGENET_TEST_FRACTION = 0.30
VALID_FRACTION = 0.25
SPLIT_SALT = "teddywatch-split/2"

#: The kinds the judge reports, from MANIFEST's `kind` column.
KIND_NAMES = {
    "bear:black": "black bears", "bear:grizzly": "grizzly bears", "bear:teddy": "teddy bears",
    "cat": "cats", "dog": "dogs", "animal": "other animals",
    "object-or-scene": "people, objects, scenes", "plush": "plush toys (not teddies)",
    "document": "documents",
}


@dataclass(frozen=True)
class Item:
    """One picture of the data set."""

    path: Path
    label: str      # black | grizzly | teddy | other
    source: str     # the source repository, as MANIFEST.tsv names it
    kind: str       # MANIFEST's kind: bear:black, cat, dog, animal, plush, document, ...
    split: str      # train | valid | test

    @property
    def is_bear(self) -> bool:
        return self.label in BEARS


class DataError(Exception):
    """The data folder is missing or not in the expected shape; the message says which file."""


def _hash_fraction(salt: str, name: str) -> float:
    digest = hashlib.sha256(f"{SPLIT_SALT}:{salt}:{name}".encode()).hexdigest()
    return int(digest[:8], 16) / 2**32


def base_source(source: str) -> str:
    """MANIFEST notes relabelled files as 'SOURCE (relabelled: ...)': the source is SOURCE."""
    return source.split(" (relabelled")[0].strip()


def split_of(name: str, source: str) -> str:
    """'train', 'valid' or 'test' for a file, from its source and file name only (no seed)."""
    src = base_source(source)
    if src in TEST_SOURCES or name in FIXTURE_FILES:
        return "test"
    if src == IMAGENET_SAMPLE and _hash_fraction("imagenet", name) < IMAGENET_TEST_FRACTION:
        return "test"
    return "valid" if _hash_fraction("valid", name) < VALID_FRACTION else "train"


def load(data_dir: Path) -> list[Item]:
    """Every picture listed in DATA/MANIFEST.tsv that exists, with its split."""
    data_dir = Path(data_dir)
    manifest = data_dir / "MANIFEST.tsv"
    if not manifest.is_file():
        raise DataError(f"{manifest}: not found. Give the shared data folder (it has bears/, "
                        "other/ and MANIFEST.tsv).")
    items = []
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = {"file", "label", "source", "kind"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"{manifest}: columns {sorted(missing)} missing; expected file, "
                            "label, source, kind.")
        for n, row in enumerate(reader, start=2):
            if row["label"] not in LABELS:
                raise DataError(f"{manifest}, line {n}: label '{row['label']}' is not one of "
                                f"{', '.join(LABELS)}.")
            path = data_dir / row["file"]
            if not path.is_file():
                continue
            items.append(Item(path, row["label"], row["source"], row["kind"],
                              split_of(path.name, row["source"])))
    if not items:
        raise DataError(f"{manifest}: lists no file that exists under {data_dir}.")
    return items


def summary(items: list[Item]) -> dict[str, dict[str, int]]:
    """{split: {kind: count}} for the model card and the judge's report."""
    out: dict[str, dict[str, int]] = {}
    for it in items:
        out.setdefault(it.split, {}).setdefault(it.kind, 0)
        out[it.split][it.kind] += 1
    return {s: dict(sorted(k.items())) for s, k in sorted(out.items())}
