"""A second kind of default-model variant: the last blocks of the body fine-tune too.

`head.py` trains only the ImageNet classifier on frozen pooled features. Here the body's last
blocks (`blocks[split:]`, its 1x1 head convolution and the classifier) train as well, with a
gentler learning rate (fast.ai's discriminative `slice(body_lr, lr)`), on cached activations of the
frozen trunk (`features.compute_trunk`), so an epoch costs only the late part. Batch-norm layers
keep their ImageNet statistics (eval mode), which small CPU batches could not estimate well.
The loss is `head.lwf_loss`, with the untouched network's logits for each augmented view, cached
with it, as the LwF teacher.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from teddywatch.training import features
from teddywatch.training.bearnet import BearNet
from teddywatch.training.head import HeadConfig, lwf_loss, with_head


@dataclass(frozen=True)
class LateConfig(HeadConfig):
    split: int = 6            # blocks[split:] train; blocks[:split] stay frozen
    body_lr: float = 1e-4     # learning rate of the late blocks (the classifier gets `lr`)


class LateNet(nn.Module):
    """Trunk activations -> [4 grouped logits | 1000 ImageNet logits]."""

    def __init__(self, backbone: nn.Module, split: int) -> None:
        super().__init__()
        self.rest = features.rest(copy.deepcopy(backbone), split)
        self.grouped = BearNet(nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.rest(x.float())
        return torch.cat([self.grouped(z), z], dim=1)

    def train(self, mode: bool = True) -> "LateNet":
        super().train(mode)
        for m in self.modules():  # keep ImageNet's batch-norm statistics
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self


class _LateLoss(nn.Module):
    def __init__(self, cfg: LateConfig, other_index: int) -> None:
        super().__init__()
        self.cfg, self.other = cfg, other_index

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        y, teacher = target[:, 0].long(), target[:, 1:]
        return lwf_loss(out[:, :4], out[:, 4:], teacher, y, self.cfg, self.other)


class _Views(torch.utils.data.Dataset):
    """Each access takes one cached augmented view at random, with its own teacher logits."""

    def __init__(self, acts: np.ndarray, teacher: np.ndarray, y: np.ndarray, seed: int) -> None:
        self.acts, self.teacher, self.y = acts, teacher, y
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.acts.shape[1]

    def __getitem__(self, i: int):  # noqa: ANN204
        v = int(self.rng.integers(self.acts.shape[0]))
        target = np.concatenate([[float(self.y[i])], self.teacher[v, i].astype(np.float32)])
        return (torch.from_numpy(self.acts[v, i].astype(np.float32)),
                torch.from_numpy(target.astype(np.float32)))


def _accuracy4(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out[:, :4].argmax(1) == target[:, 0].long()).float().mean()


def fit(backbone: nn.Module, acts: np.ndarray, teacher: np.ndarray, y: np.ndarray,
        cfg: LateConfig, other_index: int = 3) -> LateNet:
    """Fine-tune blocks[split:] + classifier (grouped) with fast.ai on cached trunk views."""
    import fastai.callback.schedule  # noqa: F401 - adds Learner.fit_one_cycle
    from fastai.callback.progress import ProgressCallback
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.learner import Learner
    from fastai.torch_core import set_seed

    set_seed(cfg.seed, reproducible=True)
    net = LateNet(backbone, cfg.split)
    ds = _Views(acts, teacher, y, cfg.seed)
    valid = [ds[i] for i in range(min(64, len(ds)))]  # fast.ai wants one; nothing is chosen on it
    dls = DataLoaders(DataLoader(ds, bs=cfg.batch_size, shuffle=True, drop_last=True),
                      DataLoader(valid, bs=64), device=torch.device("cpu"))

    def splitter(m: LateNet) -> list:
        late = [p for n, p in m.named_parameters() if not n.startswith("rest.classifier")
                and not n.startswith("grouped")]
        top = list(m.rest.classifier.parameters()) + list(m.grouped.parameters())
        return [late, top]

    learn = Learner(dls, net, loss_func=_LateLoss(cfg, other_index), splitter=splitter,
                    metrics=[_accuracy4])
    learn.remove_cbs(ProgressCallback)
    with learn.no_logging():
        learn.fit_one_cycle(cfg.epochs, slice(cfg.body_lr, cfg.lr))
    return net.eval()


def imagenet_logits(net: LateNet, acts: np.ndarray, batch: int = 128) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([net.rest(torch.from_numpy(acts[i:i + batch].astype(np.float32)))
                          for i in range(0, len(acts), batch)]).numpy()


def assemble(backbone: nn.Module, net: LateNet, split: int, temperature: float = 1.0) -> BearNet:
    """The served network: the frozen trunk with the trained late part, grouped, as a BearNet
    (the temperature folded into the classifier, see `head.with_head`)."""
    body = copy.deepcopy(backbone)
    trained = copy.deepcopy(net.rest)
    for i, block in enumerate(trained.blocks):
        body.blocks[split + i] = block
    body.conv_head, body.bn2 = trained.conv_head, trained.bn2
    return with_head(body, trained.classifier, net.grouped, temperature)
