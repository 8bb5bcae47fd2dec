"""A tie-breaker for the second opinion: where two first stages disagree, a third one votes and the median HC stands.

Two first-stage networks trained alike with other seeds fail on different heads (docs/judges.md, sessions 34-35):
one closes a small head with its gestational sac, another settles on an inner edge of a large one. Where the main
and the second first stage place a head differently (``second_opinion.first_gap`` above ``second_opinion.GATE``),
the second opinion's rule has to guess which one failed; a third first stage (another ``train.seed``) instead
measures the head too, each of the three starts goes through the same crop and polar refiners, and the measurement
with the median HC is taken. One failed network of three is outvoted whichever way it fails (too large or too
small); two that fail alike on one head are not. Elsewhere the main measurement stands, so the third network runs
only on the heads the first two disagree on (about one in eight on HC18).

Pure rule here; the estimator (estimator.py) runs the networks.
"""

from __future__ import annotations

import dataclasses
import math

from sonoshift.judges.ga.head_fit import HeadFit


def median_of_three(main: HeadFit, second: HeadFit, third: HeadFit, offset_px: float) -> HeadFit:
    """The fit whose HC (semi-axes grown by ``offset_px``) is the median of the three; ``main`` itself unless all
    three measured a head (no median of two) or the main one is the median (ties go to the main one). A fit taken
    from the other starts keeps the main head's border share (the border route reads the main first stage) and
    says it was taken (``HeadFit.second_opinion``)."""
    fits = (main, second, third)
    hcs = [f.hc_px(offset_px) for f in fits]
    if not all(math.isfinite(h) and h > 0 for h in hcs):
        return main
    below = [sum(h < hc for h in hcs) for hc in hcs]
    above = [sum(h > hc for h in hcs) for hc in hcs]
    pick = next(i for i in range(3) if below[i] <= 1 and above[i] <= 1)
    if pick == 0:
        return main
    return dataclasses.replace(fits[pick], border_fraction=main.border_fraction, second_opinion=True)
