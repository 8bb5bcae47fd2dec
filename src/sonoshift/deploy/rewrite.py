"""Exact rewrites of a network before it is traced to ONNX: the same function, cheaper ops in ONNX Runtime.

- ``nn.PReLU`` with one slope (MONAI's default activation, in every U-Net of the segmenters and GA refiners)
  becomes ``nn.LeakyReLU`` with that slope frozen: the same function at inference, but ONNX Runtime's ``PRelu``
  kernel broadcasts its slope tensor and took 29% of the polar refiner's time, ``LeakyRelu`` is a plain
  element-wise kernel: each U-Net call ~1.3x faster, the whole GA estimator 1.1x (bench/ga_speed.py prints it
  side by side), identical outputs.
"""

from __future__ import annotations

import copy

from torch import nn


def _scalar_prelu(m: nn.Module) -> bool:
    return isinstance(m, nn.PReLU) and m.weight.numel() == 1


def scalar_prelu_as_leaky(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose one-slope ``nn.PReLU`` modules are ``nn.LeakyReLU`` with the learned slope (per-channel
    PReLUs are kept); ``net`` itself is not changed, and is returned as is when it has none."""
    if not any(_scalar_prelu(m) for m in net.modules()):
        return net
    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if _scalar_prelu(child):
                setattr(parent, name, nn.LeakyReLU(float(child.weight.detach())))
    return net


def for_export(net: nn.Module) -> nn.Module:
    """``net`` with every exact rewrite of this module applied (a copy when any applies)."""
    return scalar_prelu_as_leaky(net)
