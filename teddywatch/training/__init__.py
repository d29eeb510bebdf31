"""Making models with fast.ai: training, export to ONNX, the default bears model and its judge.

Everything here needs the `[fastai]` extra (torch, fastai, timm) except `data` and `judge`'s
scoring, which read files and numbers only. Heavy imports happen inside the functions.

    fit.train(...)          fine-tune any fast.ai image classifier (`teddywatch train`)
    export.export(...)      learner .pkl -> ONNX + metadata (`teddywatch export`)
    data                    the shared data set: manifest, kinds, the split by source
    judge                   scores a model on the held-out sources, per kind, with baselines
    default_model           builds the default bears model (`make model`)
"""

from teddywatch.training.export import ExportReport, export
from teddywatch.training.fit import (ARCHS, BEAR_LABELS, TrainReport, bear_split, choose_threshold,
                                     labelled_items, list_images, train)

__all__ = ["ARCHS", "BEAR_LABELS", "ExportReport", "TrainReport", "bear_split", "choose_threshold",
           "export", "labelled_items", "list_images", "train"]
