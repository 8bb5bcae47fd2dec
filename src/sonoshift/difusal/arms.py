"""The arms of the comparison (one registry line each). All arms of a label regime share the same labelled real
frames, the same test split and the same downstream recipe; they differ only in what is added to training.

- real: the labelled real frames only.
- classical_aug: the same, with classical augmentation (flip, small affine, gamma, speckle) while training.
- unfiltered: real + as many of the DiFUSAL arm's round candidates as it accepted, drawn at random, no filter
  (same generator and allocation: the difference to ``difusal`` is the filter).
- uniform: the full loop (own generator, critics, selection, fine-tuning) with the budget split evenly over the
  conditions (the difference to ``difusal`` is the active allocation).
- difusal: the full loop with the budget allocated to the weakest (plane, GA bin) conditions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    """loop: runs rounds with its own generator; allocation: "weakness" or "uniform"; borrows: takes its
    candidates from that arm's round; classical_aug: augmentation while training the downstream models."""

    name: str
    loop: bool = False
    allocation: str = ""
    borrows: str = ""
    classical_aug: bool = False

    @property
    def per_round(self) -> bool:
        return self.loop or bool(self.borrows)


ARMS: dict[str, Arm] = {
    "real": Arm("real"),
    "classical_aug": Arm("classical_aug", classical_aug=True),
    "unfiltered": Arm("unfiltered", borrows="difusal"),
    "uniform": Arm("uniform", loop=True, allocation="uniform"),
    "difusal": Arm("difusal", loop=True, allocation="weakness"),
}


def run_order(names: tuple[str, ...]) -> list[Arm]:
    """The declared arms in an order where ``real`` comes first (the other arms' round 0 reuses its models)
    and every arm comes after the arm it borrows from."""
    arms = [ARMS[n] for n in names]
    return sorted(arms, key=lambda a: (bool(a.borrows), a.name != "real", a.name))


__all__ = ["ARMS", "Arm", "run_order"]
