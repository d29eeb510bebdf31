"""The default model's trainable part: the ImageNet classifier, grouped, fine-tuned without forgetting.

The EfficientNet-Lite0 body stays frozen; what trains is its ImageNet classifier (1280 -> 1000)
plus one bias per label, grouped into black / grizzly / teddy / other as `BearNet` does. The
loss is fast.ai's cross-entropy on the four labels plus two terms that keep what ImageNet knew:

* learning without forgetting (Li and Hoiem, 2016): on non-bear pictures, the KL divergence from
  the original 1000-way ImageNet distribution to the new one, so cats, dogs and everything else
  keep their ImageNet answers (and their `other` mass);
* L2-SP: a penalty on the distance from the original classifier weights.

Training runs on cached body features (`features.py`), with fast.ai's `Learner` and
`fit_one_cycle`, in seconds. `assemble` puts the trained head back on the body as a `BearNet`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from teddywatch.training.bearnet import GROUPS, BearNet

BEAR_COLUMNS = tuple(i for idx in GROUPS.values() for i in idx)


@dataclass(frozen=True)
class HeadConfig:
    """What the validation split chooses between (see `default_model.VARIANTS`)."""

    epochs: int = 6
    lr: float = 1e-3
    lwf: float = 1.0          # weight of the distillation term on non-bear pictures
    l2sp: float = 1e-3        # weight of ||W - W0||^2
    kd_temperature: float = 2.0
    other_weight: float = 1.0  # weight of non-bear pictures in the cross-entropy
    batch_size: int = 64
    seed: int = 0


class GroupedHead(nn.Module):
    """Features -> [4 grouped logits | 1000 ImageNet logits | 1000 logits of the untouched
    ImageNet classifier]: the last two feed the LwF loss; only the first is ever served."""

    def __init__(self, classifier: nn.Linear) -> None:
        super().__init__()
        self.classifier = nn.Linear(classifier.in_features, classifier.out_features)
        self.classifier.load_state_dict(classifier.state_dict())
        self.teacher = nn.Linear(classifier.in_features, classifier.out_features)
        self.teacher.load_state_dict(classifier.state_dict())
        self.teacher.requires_grad_(False)
        self.grouped = BearNet(nn.Identity())  # grouping + per-label bias, no backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.classifier(x)
        return torch.cat([self.grouped(z), z, self.teacher(x)], dim=1)


def lwf_loss(grouped: torch.Tensor, logits: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor,
             cfg: HeadConfig, other_index: int) -> torch.Tensor:
    """Weighted cross-entropy on the 4 labels + LwF distillation (KL from the untouched
    network's 1000-way answer) on the non-bear pictures of the batch."""
    weight = torch.ones(grouped.shape[1])
    weight[other_index] = cfg.other_weight
    loss = F.cross_entropy(grouped, y, weight=weight)
    neg = y == other_index
    if cfg.lwf and neg.any():
        t = cfg.kd_temperature
        kd = F.kl_div(F.log_softmax(logits[neg] / t, 1), F.log_softmax(teacher[neg] / t, 1),
                      log_target=True, reduction="batchmean") * t * t
        loss = loss + cfg.lwf * kd
    return loss


class LwfLoss(nn.Module):
    """`lwf_loss` + L2-SP toward the start weights of the classifier."""

    def __init__(self, head: GroupedHead, cfg: HeadConfig, other_index: int) -> None:
        super().__init__()
        self.cfg, self.other = cfg, other_index
        self.head = [head]  # a list: not a submodule, not saved twice

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        n = self.head[0].classifier.out_features
        loss = lwf_loss(out[:, :4], out[:, 4:4 + n], out[:, 4 + n:], y, self.cfg, self.other)
        if self.cfg.l2sp:
            c, c0 = self.head[0].classifier, self.head[0].teacher
            loss = loss + self.cfg.l2sp * (((c.weight - c0.weight) ** 2).sum()
                                           + ((c.bias - c0.bias) ** 2).sum())
        return loss


class _Views(torch.utils.data.Dataset):
    """Training pictures: each access takes one of the cached augmented views at random."""

    def __init__(self, views: np.ndarray, targets: torch.Tensor, seed: int) -> None:
        self.views = torch.from_numpy(np.ascontiguousarray(views))  # (V, N, D)
        self.targets = targets
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.views.shape[1]

    def __getitem__(self, i: int):  # noqa: ANN204
        return self.views[int(self.rng.integers(self.views.shape[0])), i], self.targets[i]


def fit(classifier: nn.Linear, train_views: np.ndarray, y_train: np.ndarray,
        valid_feats: np.ndarray, y_valid: np.ndarray, cfg: HeadConfig,
        other_index: int = 3, progress: bool = False) -> GroupedHead:
    """Fine-tune a copy of `classifier` (grouped) with fast.ai on cached features."""
    import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
    from fastai.callback.progress import ProgressCallback
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.torch_core import set_seed

    set_seed(cfg.seed, reproducible=True)
    head = GroupedHead(classifier)
    train_ds = _Views(train_views, torch.from_numpy(y_train).long(), cfg.seed)
    valid_ds = list(zip(torch.from_numpy(valid_feats), torch.from_numpy(y_valid).long()))
    dls = DataLoaders(DataLoader(train_ds, bs=cfg.batch_size, shuffle=True, drop_last=True),
                      DataLoader(valid_ds, bs=256), device=torch.device("cpu"))
    learn = Learner(dls, head, loss_func=LwfLoss(head, cfg, other_index),
                    metrics=[_accuracy4])
    if not progress:
        learn.remove_cbs(ProgressCallback)
    with learn.no_logging() if not progress else _nullcontext():
        learn.fit_one_cycle(cfg.epochs, cfg.lr)
    return head.eval()


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a) -> None:  # noqa: ANN002
        return None


def _accuracy4(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out[:, :4].argmax(1) == y).float().mean()


def grouped_at(grouping: BearNet, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Grouped logits of 1000 ImageNet logits at `temperature` (divided before grouping)."""
    with torch.no_grad():
        return grouping(torch.from_numpy(logits) / temperature).numpy()


def fit_temperature(parts: list[tuple[BearNet, np.ndarray, np.ndarray]]) -> float:
    """Temperature scaling (Guo et al., 2017): the T, applied to the ImageNet logits before
    grouping (as `assemble` does), that minimises the 4-way NLL over (grouping, ImageNet logits,
    labels) parts, e.g. each cross-validation fold's model on the pictures it did not train on."""

    def nll(temperature: float) -> float:
        total = 0.0
        for grouping, logits, y in parts:
            z = torch.from_numpy(grouped_at(grouping, logits, temperature))
            total += float(F.cross_entropy(z, torch.from_numpy(y).long(), reduction="sum"))
        return total

    return float(min(np.exp(np.linspace(np.log(0.25), np.log(8.0), 97)), key=nll))


def imagenet_logits(head: GroupedHead, feats: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head.classifier(torch.from_numpy(feats)).numpy()


def with_head(body: nn.Module, classifier: nn.Linear, grouped: BearNet,
              temperature: float = 1.0) -> BearNet:
    """`body` (a backbone copy, changed in place) with `classifier`'s weights and `grouped`'s
    biases, as a BearNet. The temperature is folded into the classifier: its weights and bias
    are divided by T, so the network groups logits / T, which is what `fit_temperature` fits."""
    cls = body.get_classifier()
    with torch.no_grad():
        cls.weight.copy_(classifier.weight / temperature)
        cls.bias.copy_(classifier.bias / temperature)
    net = BearNet(body)
    with torch.no_grad():
        net.bias.copy_(grouped.bias)
    return net.eval()


def assemble(backbone: nn.Module, head: GroupedHead, temperature: float = 1.0) -> BearNet:
    """The served network: the frozen body with the trained classifier, grouped, as a BearNet."""
    import copy

    return with_head(copy.deepcopy(backbone), head.classifier, head.grouped, temperature)


def grouped_logits_at(head: GroupedHead, feats: np.ndarray, temperature: float = 1.0
                      ) -> np.ndarray:
    """Grouped logits as the assembled network computes them at `temperature`."""
    return grouped_at(head.grouped, imagenet_logits(head, feats), temperature)
