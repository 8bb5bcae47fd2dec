"""Learning-rate schedules as pure functions of the step (nothing to save but the step itself).

The one home of every LR schedule: the loop's default (constant then linear decay, CycleGAN) and the cosine
decay of the diffusion GAN. A method picks one through ``lr_factor`` in its ``lr_factors`` hook.
"""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant_then_linear", "cosine"]


def constant_then_linear(step: int, total_steps: int, decay_steps: int) -> float:
    """LR factor in [0, 1]: 1 for steps <= total_steps - decay_steps, then linear towards 0 at total_steps.

    ``step`` is the 0-based index of the step about to run. With decay_steps = 0 the factor is always 1.
    Example (total 10, decay 4): steps 0..6 -> 1, step 7 -> 0.75, 8 -> 0.5, 9 -> 0.25.
    """
    if decay_steps <= 0:
        return 1.0
    start = total_steps - decay_steps
    return min(1.0, max(0.0, 1.0 - (step - start) / decay_steps))


def cosine_factor(step: int, total_steps: int, min_ratio: float = 0.0) -> float:
    """LR factor min_ratio + (1 - min_ratio)(1 + cos(pi step / total)) / 2: 1 at step 0, min_ratio at the end."""
    if total_steps <= 0:
        return 1.0
    frac = min(max(step / total_steps, 0.0), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))


def decay_steps(total_steps: int, epochs: int, decay_epochs: int) -> int:
    """How many of ``total_steps`` decay linearly: the last ``decay_epochs`` of ``epochs``, as a step count."""
    return round(total_steps * min(decay_epochs, epochs) / max(epochs, 1))


def lr_factor(
    schedule: Schedule, step: int, total_steps: int, *, epochs: int = 1, decay_epochs: int = 0,
    min_ratio: float = 0.0, decay_start: float = 0.0,
) -> float:
    """The factor of ``schedule`` at ``step``: "constant_then_linear" decays over the last ``decay_epochs`` of
    ``epochs``; "cosine" holds 1 for the first fraction ``decay_start`` of the run, then decays from 1 to
    ``min_ratio`` over the rest (``decay_start`` 0: over the whole run)."""
    if schedule == "cosine":
        start = round(decay_start * total_steps)
        return cosine_factor(step - start, total_steps - start, min_ratio)
    return constant_then_linear(step, total_steps, decay_steps(total_steps, epochs, decay_epochs))
