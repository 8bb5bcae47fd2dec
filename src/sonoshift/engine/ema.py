"""Exponential moving average of a module's weights (kept as a frozen copy usable for sampling)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``ema.module`` follows ``decay * ema + (1 - decay) * online`` for parameters; buffers are copied.

    The copy lives on the online module's device, in eval mode, without gradients. ``decay`` in [0, 1).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        assert 0.0 <= decay < 1.0, f"EMA decay must be in [0, 1), got {decay}"
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average one step towards ``module`` (same architecture)."""
        ema_p = list(self.module.parameters())
        on_p = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(ema_p, on_p, 1.0 - self.decay)
        for b_ema, b in zip(self.module.buffers(), module.buffers()):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (a module state dict)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights saved by :meth:`state_dict`."""
        self.module.load_state_dict(state)
