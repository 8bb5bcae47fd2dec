"""Exponential moving average of a module's weights (kept as a frozen copy usable for sampling)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmup_decay(decay: float, num_updates: int) -> float:
    """The decay of update number ``num_updates`` + 1 with warm-up: min(decay, (1 + n) / (10 + n)).

    0.1 at the first update, 0.5 after 8, 0.9 after 80, 0.99 after 890: early averages follow the trained
    weights instead of keeping the random init (at decay 0.995 without warm-up, 13.5% of the average is still the
    init after 400 updates; 0.995^400 = 0.135).
    """
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class EMA:
    """``ema.module`` follows ``d * ema + (1 - d) * online`` for parameters; buffers are copied.

    ``d`` = ``decay``, or with ``warmup`` the smaller :func:`warmup_decay` of the number of updates so far
    (``num_updates``; the training loop sets it to the checkpoint's step on resume). The copy lives on the
    online module's device, in eval mode, without gradients. ``decay`` in [0, 1).
    """

    def __init__(self, module: nn.Module, decay: float, warmup: bool = False) -> None:
        assert 0.0 <= decay < 1.0, f"EMA decay must be in [0, 1), got {decay}"
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        return warmup_decay(self.decay, self.num_updates) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average one step towards ``module`` (same architecture)."""
        ema_p = list(self.module.parameters())
        on_p = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(ema_p, on_p, 1.0 - self.current_decay())
        for b_ema, b in zip(self.module.buffers(), module.buffers()):
            b_ema.copy_(b)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights (a module state dict)."""
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore averaged weights saved by :meth:`state_dict`."""
        self.module.load_state_dict(state)
