"""Learning-rate schedules as pure functions of the step (nothing to save but the step itself)."""

from __future__ import annotations


def constant_then_linear(step: int, total_steps: int, decay_steps: int) -> float:
    """LR factor in [0, 1]: 1 for steps <= total_steps - decay_steps, then linear towards 0 at total_steps.

    ``step`` is the 0-based index of the step about to run. With decay_steps = 0 the factor is always 1.
    Example (total 10, decay 4): steps 0..6 -> 1, step 7 -> 0.75, 8 -> 0.5, 9 -> 0.25.
    """
    if decay_steps <= 0:
        return 1.0
    start = total_steps - decay_steps
    return min(1.0, max(0.0, 1.0 - (step - start) / decay_steps))
