"""A second opinion on where a small head is: another first-stage network's start, taken where it is much smaller
and the polar refiner is surer of its outline.

A first-stage network sometimes closes a small first-trimester head together with its gestational sac (or tissue
beside it) into one blob; the crop refiner, shown a crop around that blob, then draws the sac wall, and the polar
refiner settles on it. Which heads this happens to depends on the network: two first stages trained alike with
other seeds fail on different heads (docs/judges.md, session 34). So a second first-stage network places its own
crop, the same crop refiners measure from it, and where the two crop-stage measurements differ by more than a
factor exp(``tau``) the smaller one is a candidate: a skull lies inside its sac, never around it. But the second
network can fail small too (a large head measured on an inner edge: session 34, seed 4), so with a polar refiner the
candidate is taken only where the polar refiner, run from both, is surer of the candidate's outline
(``more_confident``: a sac wall is a fainter, less regular edge than a skull). Elsewhere the main measurement stands,
so the option moves only the heads on which the two networks disagree.

A crop refinement costs about 8 times a first stage per head, so it runs from the second network's fit only where
the two first-stage fits differ by more than ``GATE`` (``first_gap``: the size ratio or the centre distance): on
four seeds' networks (12 ordered pairs, 250 held-out heads each) nine heads in ten are below it, and below it the
two crop-stage measurements never differed by more than 0.077, short of ``TAU``.

Pure rule here; the estimator (estimator.py) runs the networks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from sonoshift.judges.ga.head_fit import HeadFit

TAU = 0.10  # |log ratio| of the two crop-stage HCs above which they disagree (declared in session 34, not tuned)
GATE = 0.05  # first-stage fits closer than this are not crop-refined twice (a speed gate, see above)


def first_gap(main: HeadFit, second: HeadFit, offset_px: float) -> float:
    """How far apart two first-stage fits are: the larger of |log| of their HC ratio and their centres' distance
    over the smaller semi-minor axis (semi-axes grown by ``offset_px``); inf where either found no head."""
    a, b = main.hc_px(offset_px), second.hc_px(offset_px)
    if not (np.isfinite(a) and np.isfinite(b)):
        return math.inf
    e, f = main.ellipse, second.ellipse
    return max(abs(math.log(a / b)), math.hypot(e.cx - f.cx, e.cy - f.cy) / (min(e.b, f.b) + offset_px))


def takes_second(hc_main: Sequence[float], hc_second: Sequence[float], tau: float = TAU) -> np.ndarray:
    """Which heads take the second opinion: both measured (finite, > 0), the second smaller than the main one by
    more than a factor exp(``tau``)."""
    a, b = np.asarray(hc_main, float), np.asarray(hc_second, float)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    out = np.zeros(a.shape, bool)
    out[ok] = np.log(a[ok] / b[ok]) > tau
    return out


def more_confident(main: Sequence[HeadFit], candidate: Sequence[HeadFit]) -> np.ndarray:
    """Where the candidate's polar outline confidence is higher than the main measurement's (both finite)."""
    a = np.array([f.outline_confidence for f in main], float)
    b = np.array([f.outline_confidence for f in candidate], float)
    return np.isfinite(a) & np.isfinite(b) & (b > a)


def second_opinion(main: Sequence[HeadFit], second: Sequence[HeadFit], offset_px: float, tau: float = TAU
                   ) -> tuple[list[HeadFit], np.ndarray]:
    """``main`` with the fits of ``second`` where they are much smaller (``takes_second`` on the HCs of the
    semi-axes grown by ``offset_px``), and which ones those are. A taken fit keeps the main head's border share
    (the border route reads the main first stage) and says it was taken (``HeadFit.second_opinion``)."""
    take = takes_second([f.hc_px(offset_px) for f in main], [f.hc_px(offset_px) for f in second], tau)
    out = [dataclasses.replace(s, border_fraction=m.border_fraction, second_opinion=True) if t else m
           for m, s, t in zip(main, second, take)]
    return out, take
