"""Batch norms folded into the layers before them, for inference.

In eval mode a batch norm is an affine map per channel, ``y = (x - mean) / sqrt(var + eps) *
gamma + beta``, so after a convolution or linear layer ``x = W u + b`` it folds into that layer:
``W' = W s``, ``b' = (b - mean) s + beta`` with ``s = gamma / sqrt(var + eps)``. The network then
runs one kernel instead of two per pair (52 of MoveNet's 55 batch norms: 8 ms of its 63 ms on one
CPU core), and the running statistics, whose variance can exceed float16's range, are gone before a
float16 cast.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fold_batch_norms"]

_FOLDABLE = ((nn.Conv2d, nn.BatchNorm2d), (nn.Linear, nn.BatchNorm1d))


def _fold_pair(layer: nn.Conv2d | nn.Linear, norm: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    """Fold ``norm`` into ``layer`` in place (float64 arithmetic, stored at the layer's dtype)."""
    weight = layer.weight.detach().double()
    scale = norm.running_var.double().add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.detach().double()
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(scale)
    shift = norm.bias.detach().double() if norm.bias is not None else torch.zeros_like(scale)
    folded_weight = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    folded_bias = (bias - norm.running_mean.double()) * scale + shift
    dtype = layer.weight.dtype
    layer.weight = nn.Parameter(folded_weight.to(dtype), requires_grad=False)
    layer.bias = nn.Parameter(folded_bias.to(dtype), requires_grad=False)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold, in place, every eval-mode batch norm that directly follows a convolution or linear
    layer of the same width inside an ``nn.Sequential`` (the norm becomes ``nn.Identity``); other
    batch norms stay. Returns ``module``, which must be in eval mode.

    Raises:
        ValueError: ``module`` is in training mode (its batch norms use batch statistics).
    """
    if module.training:
        raise ValueError("fold_batch_norms needs a module in eval mode (call .eval() first)")
    for sequence in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequence._modules)
        for first, second in zip(names, names[1:]):
            layer, norm = sequence._modules[first], sequence._modules[second]
            if any(isinstance(layer, kind) and type(norm) is norm_kind for kind, norm_kind in _FOLDABLE) \
                    and norm.track_running_stats and layer.weight.shape[0] == norm.num_features:
                _fold_pair(layer, norm)
                sequence._modules[second] = nn.Identity()
    return module
