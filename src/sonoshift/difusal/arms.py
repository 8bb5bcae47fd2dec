"""The arms of the comparison (one registry line each). All arms of a label regime share the same labelled real
frames, the same test split and the same downstream recipe; they differ only in what is added to training.

- real: the labelled real frames only.
- classical_aug: the same, with classical augmentation (flip, small affine, gamma, speckle) while training.
- unfiltered: real + as many of the DiFUSAL arm's round candidates as it accepted, drawn at random, no filter
  (same generator and allocation: the difference to ``difusal`` is the filter).
- uniform: the full loop (own generator, critics, selection, fine-tuning) with the budget split evenly over the
  conditions (the difference to ``difusal`` is the active allocation).
- difusal: the full loop with the budget allocated to the weakest (plane, GA bin) conditions.
- translated (needs ``data.harmonizer``): real + every labelled real frame translated into the test domain's look
  by the harmonizer's reverse generator (a CycleGAN test -> training domain run read backwards; labels kept:
  pixel-level domain adaptation, the harmonization half's "real + harmonized frames"), with classical
  augmentation (so that its difference to ``classical_aug`` is the translated frames).
- translated_difusal: "both together": the translated arm's frames + the DiFUSAL arm's accepted images of each
  round (no generator of its own: the difference to ``difusal`` is the translated frames).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arm:
    """loop: runs rounds with its own generator; allocation: "weakness" or "uniform"; borrows: takes its
    candidates from that arm's round (as many, drawn at random, as that arm accepted); reuses: trains on that arm's
    accepted images of each round; classical_aug: augmentation while training the downstream models; translated:
    the labelled frames translated into the test domain's look join the training set."""

    name: str
    loop: bool = False
    allocation: str = ""
    borrows: str = ""
    classical_aug: bool = False
    reuses: str = ""
    translated: bool = False

    @property
    def lender(self) -> str:
        """The arm whose round this arm follows (borrows or reuses; "" for none)."""
        return self.borrows or self.reuses

    @property
    def per_round(self) -> bool:
        return self.loop or bool(self.lender)


ARMS: dict[str, Arm] = {
    "real": Arm("real"),
    "classical_aug": Arm("classical_aug", classical_aug=True),
    "unfiltered": Arm("unfiltered", borrows="difusal"),
    "uniform": Arm("uniform", loop=True, allocation="uniform"),
    "difusal": Arm("difusal", loop=True, allocation="weakness"),
    "translated": Arm("translated", classical_aug=True, translated=True),
    "translated_difusal": Arm("translated_difusal", reuses="difusal", translated=True),
}


def run_order(names: tuple[str, ...]) -> list[Arm]:
    """The declared arms in an order where ``real`` comes first (the other arms' round 0 reuses its models)
    and every arm comes after the arm it borrows from."""
    arms = [ARMS[n] for n in names]
    return sorted(arms, key=lambda a: (bool(a.lender), a.name != "real", a.name))


__all__ = ["ARMS", "Arm", "run_order"]
