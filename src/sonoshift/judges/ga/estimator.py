"""The GA estimator: a head segmenter + the calibrated ellipse fit -> HC (mm) -> GA (Hadlock, INTERGROWTH-21st).

Frames are resized to the segmenter's square size in one batch, head probabilities come from the network (the
mean with its horizontally flipped twin when ``tta``; the mean over the members of an ensemble), and each map
gives one ellipse (head_fit.py) measured in the frame's native pixels; the pixel size (mm) turns it into an HC.
With crop refiners, each found head is looked at again in a head-centred native square (head_crop.py) at the
refiners' model size, and the ellipse fitted to that map is the measurement. A polar refiner (polar_refiner.py)
then looks along rays of that ellipse at native resolution and moves it.
The checkpoint is the (first) segmenter's folder (``model.safetensors`` + ``segmenter.json``) whose
``info.ga_estimator`` holds the calibration; further ensemble members and refiners are segmenter folders inside it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from sonoshift.biometry.intergrowth import ga_weeks_from_hc as intergrowth_ga_weeks
from sonoshift.data.frame_inputs import FrameRef, read_frame
from sonoshift.downstream.segmenter import Segmenter, load_segmenter
from sonoshift.errors import SonoshiftError
from sonoshift.biometry.hadlock import ga_from_hc as hadlock_ga_from_hc
from sonoshift.judges.ga.border_cut import canvas_padding, ellipse_border_gap, ellipse_outside, pad_canvas
from sonoshift.judges.ga.crop_search import crop_fits, search_fits
from sonoshift.judges.ga.head_fit import HeadFit, fit_head
from sonoshift.judges.ga.polar_refiner import PolarRefiner, polar_fits
from sonoshift.judges.ga.scale_check import scale_checked
from sonoshift.judges.ga.second_opinion import GATE, TAU, first_gap, more_confident, second_opinion
from sonoshift.judges.ga.tie_breaker import median_of_three

KEY = "ga_estimator"
BATCH = 32  # images per batch in one lane
# ... in each of several lanes: smaller batches interleave the lanes' network calls with their Python steps more
# finely (bench/ga_speed.py --lane-batch: x1.05-1.15 images/s at 8 against 32 on two cores, the same rows)
LANE_BATCH = 8
# a polar refiner that is this unsure of every ray's outline found no head (about 5/96 is no idea at all: a blank
# frame reads 0.05); HC18 heads read 0.35-0.77 uncut and 0.24 or more cut by the border at 10-40 % of their extent
# (5-fold CV and fold 0's cut heads, docs/judges.md "Session 39"), so no real head of HC18 falls below it
MIN_OUTLINE_CONFIDENCE = 0.15
# A frame with no echo has no head, whatever a network draws on it (a blank frame, a black DICOM frame): at least
# this share of the first model input's pixels must be brighter than ECHO_LEVEL (HC18's heads: 0.25 or more).
ECHO_LEVEL = 10
MIN_ECHO_FRACTION = 0.01


@dataclass(frozen=True)
class GaEstimator:
    """Segmenter, semi-axis offset (native pixels, calibrated on training masks), flip test-time averaging, and
    optional further segmenters (``members``) whose head maps are averaged with the first's (an ensemble; maps
    of different sizes meet, bilinearly resized, at the largest member's size). ``refiners`` (crop refiners,
head_crop.py) take a second look at each found head in a square of side ``crop_margin`` x its long axis; their
maps are averaged the same way and the ellipse fitted to them replaces the first one (kept where they find none,
and where the refined HC exceeds the first by more than the factor ``refine_max_growth``: a refiner, trained on
crops that a head fills to about 1 / ``crop_margin``, segments the fluid sac around a small head whose first
ellipse was already too large and grows it further). ``tta`` is the first stage's flip averaging, ``refine_tta``
the refiners' (None: the same as ``tta``); the first stage only places the crop when refiners follow.
Where the refiners' map is not an ellipse (IoU of its filled component with the fitted ellipse below
``rescue_iou``; 0 never), the crop was wrong: crop_search.py looks again from the first ellipse shrunk by each of
``rescue_scales`` and the most elliptic candidate is the measurement. ``polar`` (none or one polar refiner) takes a
last look along rays of the ellipse so far, at native resolution (polar_refiner.py). ``border``: a second
estimator, trained on heads cut by the image border (``cut_heads``, border_cut.py), that measures instead every
head whose first-stage fit has more than ``border_threshold`` of its contour at the image border (networks trained
on whole heads draw a cut head as a smaller closed one; bench/ga_border.py). ``border_gap`` > 0 adds a second look:
a head whose first-stage ellipse stays within ``border_gap`` x its semi-minor axis of the border (or crosses it)
without touching it goes to ``border`` too when the border estimator's own first stage puts more than
``border_threshold`` of its contour at the border (the main first stage closed a cut head inside the frame).
``scale_check``: a polar refiner with a wide view (scale_check.py): a measurement it does not come back to from
inside (a small head measured with its sac) is replaced by the smallest outline it does come back to.
``second``: another first-stage network (second_opinion.py): a head whose two first-stage fits differ is also
crop-refined from the second fit, and where that measurement is smaller than the main one by more than a factor
exp(``second_tau``) it is the polar refiner's start instead (the main first stage closed a small head with its sac),
if the polar refiner is surer of the outline it finds from there than from the main start. ``third``: a tie-breaker
for the second opinion (tie_breaker.py; needs ``second``): where the two first-stage fits differ, a third first stage
measures the head too, each start goes through the crop and polar refiners, and the median HC is taken instead."""

    segmenter: Segmenter
    offset_px: float = 0.0
    tta: bool = True
    members: tuple[Segmenter, ...] = ()
    refiners: tuple[Segmenter, ...] = ()
    crop_margin: float = 1.3
    refine_max_growth: float = math.inf
    refine_tta: bool | None = None
    rescue_iou: float = 0.0
    rescue_scales: tuple[float, ...] = (0.9, 0.8, 0.7)
    polar: tuple[PolarRefiner, ...] = ()
    border: GaEstimator | None = None
    border_threshold: float = 0.0
    border_gap: float = 0.0
    scale_check: PolarRefiner | None = None
    second: Segmenter | None = None
    second_tau: float = TAU
    third: Segmenter | None = None

    @property
    def segmenters(self) -> tuple[Segmenter, ...]:
        return (self.segmenter, *self.members)

    @property
    def head_class(self) -> int:
        return _head_class(self.segmenter)

    @property
    def input_sizes(self) -> tuple[int, ...]:
        """The distinct model input sizes, in member order."""
        return tuple(dict.fromkeys(s.image_size for s in self.segmenters))

    @property
    def amodal(self) -> bool:
        """The (first-stage) networks draw a cut head on beyond the frame's border (``Hc18Config.amodal``)."""
        return is_amodal(self.segmenter)

    @property
    def canvas_pad(self) -> float:
        """The share of a frame's height and width that the first stage's canvas adds on each side (0: none)."""
        return canvas_pad(self.segmenter)

    def first_fit(self, prob: np.ndarray, shape: tuple[int, int]) -> HeadFit:
        """The first stage's fit of its map ``prob`` of a frame of native ``shape``."""
        return fit_head(prob, shape, pad=canvas_padding(shape, self.canvas_pad), amodal=self.amodal)


def is_amodal(seg: Segmenter) -> bool:
    """Whether ``seg`` was trained to draw cut heads on beyond the border (``Hc18Config.amodal``)."""
    return bool((seg.config or {}).get("amodal", False))


def canvas_pad(seg: Segmenter) -> float:
    """The canvas padding an amodal whole-frame segmenter sees its frames on (0 for any other)."""
    cfg = seg.config or {}
    return float(cfg.get("canvas_pad", 0.0)) if is_amodal(seg) and not cfg.get("head_crops") else 0.0


def _head_class(seg: Segmenter) -> int:
    for name in ("head", "fetal_head"):
        if name in seg.classes:
            return seg.classes.index(name)
    return 1


def load_ga_estimator(path: str | Path, device: str | torch.device | None = None) -> GaEstimator:
    """A GA estimator folder (``sonoshift ga build``); a plain segmenter checkpoint is refused (not calibrated).
    Ensemble members live in sub-folders named in ``info.ga_estimator.members`` (crop refiners: ``refiners``;
    polar networks, one refiner together: ``polar``)."""
    seg = load_segmenter(path, device)
    meta = seg.info.get(KEY)
    if not isinstance(meta, dict) or "offset_px" not in meta:
        raise SonoshiftError(f"{path} is a segmenter without GA calibration; run `sonoshift ga build` on it first.")
    members = tuple(load_segmenter(Path(path) / m, device) for m in meta.get("members", []))
    refiners = tuple(load_segmenter(Path(path) / m, device) for m in meta.get("refiners", []))
    polar_nets = [load_segmenter(Path(path) / m, device) for m in meta.get("polar", [])]
    polar = (PolarRefiner.from_segmenters(polar_nets, meta.get("polar_tta")),) if polar_nets else ()
    border = load_ga_estimator(Path(path) / meta["border"], device) if meta.get("border") else None
    check = (PolarRefiner.from_segmenter(load_segmenter(Path(path) / meta["scale_check"], device))
             if meta.get("scale_check") else None)
    second = load_segmenter(Path(path) / meta["second_opinion"], device) if meta.get("second_opinion") else None
    third = load_segmenter(Path(path) / meta["tie_breaker"], device) if meta.get("tie_breaker") else None
    tta = bool(meta.get("tta", True))
    return GaEstimator(seg, float(meta["offset_px"]), tta, members, refiners,
                       float(meta.get("crop_margin", 1.3)), float(meta.get("refine_max_growth", math.inf)),
                       bool(meta.get("refine_tta", tta)), float(meta.get("rescue_iou", 0.0)),
                       tuple(float(s) for s in meta.get("rescue_scales", (0.9, 0.8, 0.7))), polar, border,
                       float(meta.get("border_threshold", 0.0)), float(meta.get("border_gap", 0.0)), check,
                       second, float(meta.get("second_tau", TAU)), third)


def frame_to_input(frame: np.ndarray, size: int, pad: float = 0.0) -> np.ndarray:
    """One uint8 (H, W) frame -> (size, size) float32 in [-1, 1] (INTER_AREA: each model pixel averages the native
    pixels it covers, so the map stays exact to the sub-pixel level); ``pad`` > 0: the frame on its canvas
    (border_cut.pad_canvas) instead."""
    f = pad_canvas(frame, pad) if pad > 0 else np.asarray(frame)
    r = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
    return r.astype(np.float32) / 127.5 - 1.0


def frames_to_batch(frames: Sequence[np.ndarray], size: int, pad: float = 0.0) -> torch.Tensor:
    """uint8 frames of any size -> (N, 1, size, size) float32 in [-1, 1] (INTER_AREA; ``pad``: on canvases)."""
    out = np.empty((len(frames), 1, size, size), np.float32)
    for i, f in enumerate(frames):
        out[i, 0] = frame_to_input(f, size, pad)
    return torch.from_numpy(out)


@torch.inference_mode()
def batch_probabilities(
    est: GaEstimator, x: torch.Tensor | dict[int, torch.Tensor], batch_size: int = BATCH,
) -> np.ndarray:
    """Head probability maps (N, S, S) float32 for model inputs in [-1, 1]: ``x`` (N, 1, s, s) for one input
    size, or {size: inputs} covering ``est.input_sizes``. S is the largest member's size."""
    xs = x if isinstance(x, dict) else {int(x.shape[-1]): x}
    out_size = max(s.image_size for s in est.segmenters)
    n = len(next(iter(xs.values())))
    out = []
    for i in range(0, n, batch_size):
        acc = None
        for seg in est.segmenters:
            model = seg.model.eval()
            xb = xs[seg.image_size][i : i + batch_size].to(next(model.parameters()).device)
            k = _head_class(seg)
            p = torch.softmax(model(xb).float(), 1)[:, k]
            if est.tta:
                p = 0.5 * (p + torch.softmax(model(xb.flip(-1)).float(), 1)[:, k].flip(-1))
            if seg.image_size != out_size:
                p = torch.nn.functional.interpolate(p[:, None], size=(out_size, out_size), mode="bilinear",
                                                    align_corners=False)[:, 0]
            acc = p if acc is None else acc + p
        out.append((acc / len(est.segmenters)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0,) * 3, np.float32)


def head_probabilities(est: GaEstimator, frames: Sequence[np.ndarray], batch_size: int = BATCH) -> np.ndarray:
    """Head probability maps (N, S, S) float32 at the (largest) model size, one per uint8 frame."""
    return batch_probabilities(est, {s: frames_to_batch(frames, s, est.canvas_pad) for s in est.input_sizes},
                               batch_size)


def refine_fits(
    est: GaEstimator, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], batch_size: int = BATCH,
) -> list[HeadFit]:
    """The crop refiners' fits for the found heads of ``fits`` (first-stage fits of ``frames``, uint8 (H, W));
    ``fits`` unchanged without refiners, and kept wherever a refiner finds no head in its crop or grows the HC by
    more than ``est.refine_max_growth``. Where the refined map is not elliptic (``est.rescue_iou``) the most
    elliptic candidate of the crop search (crop_search.py) replaces either. The polar refiner, if any, then moves
    every found ellipse (polar_refiner.py). A second opinion (``est.second``, second_opinion.py) proposes a smaller
    crop-stage fit from another first stage where the two disagree, taken where the polar refiner is surer of its
    outline (without one: taken); with a tie-breaker (``est.third``, tie_breaker.py) the median of three starts is
    taken instead. Heads at the image border go to ``est.border`` when it has one."""
    out = _crop_refined(est, frames, fits, batch_size)
    tie = est.second is not None and est.third is not None
    alt = _second_opinion(est, frames, fits, out, batch_size) if est.second is not None and not tie else {}
    if tie:
        out = _median_fits(est, frames, out, _tie_break(est, frames, fits, batch_size), batch_size)
    elif est.polar:
        out = polar_fits(est.polar[0], frames, out, est.offset_px, batch_size)
        if alt:  # the candidates measured too; taken where the polar refiner is surer of their outline
            at = sorted(alt)
            moved = polar_fits(est.polar[0], [frames[i] for i in at], [alt[i] for i in at], est.offset_px, batch_size)
            for i, fit, take in zip(at, moved, more_confident([out[i] for i in at], moved)):
                if take:
                    out[i] = fit
    else:
        for i, fit in alt.items():
            out[i] = fit
    if est.scale_check is not None:
        out = scale_checked(est.scale_check, frames, out, est.offset_px)[0]
    firsts = _border_first_fits(est, frames, fits, batch_size)
    if firsts:
        at = sorted(firsts)
        grow = est.border.offset_px - est.offset_px  # its ellipses in this estimator's offset convention
        measured = refine_fits(est.border, [frames[i] for i in at], [firsts[i] for i in at], batch_size)
        for i, fit in zip(at, measured):
            if fit.found:
                e = dataclasses.replace(fit.ellipse, a=fit.ellipse.a + grow, b=fit.ellipse.b + grow)
                out[i] = dataclasses.replace(fit, ellipse=e, border_fraction=fits[i].border_fraction)
    return out


def _border_first_fits(est: GaEstimator, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], batch_size: int
                       ) -> dict[int, HeadFit]:
    """The heads ``est.border`` measures, each with the border estimator's own first-stage fit: first-stage border
    share above the threshold, and (``border_gap``) those near the border whose share in that first stage is above
    it (each head's first stage runs once)."""
    if est.border is None:
        return {}
    at = [i for i, f in enumerate(fits) if f.found and f.border_fraction > est.border_threshold]
    near = [] if est.border_gap <= 0 else [
        i for i, f in enumerate(fits) if f.found and f.border_fraction <= est.border_threshold
        and ellipse_border_gap(*dataclasses.astuple(f.ellipse), np.shape(frames[i])) < est.border_gap]
    first = dataclasses.replace(est.border, refiners=(), polar=(), border=None)
    both = at + near
    out = dict(zip(both, fits_for(first, [frames[i] for i in both], batch_size))) if both else {}
    taken = set(at)
    return {i: f for i, f in out.items() if i in taken or (f.found and f.border_fraction > est.border_threshold)}


def _first_stage(est: GaEstimator, seg: Segmenter, frames: Sequence[np.ndarray], batch_size: int
                 ) -> tuple[GaEstimator, list[HeadFit]]:
    """``est`` with ``seg`` as its only first-stage network (no second opinion) and that network's fits of
    ``frames``."""
    other = dataclasses.replace(est, segmenter=seg, members=(), second=None, third=None)
    probs = head_probabilities(other, frames, batch_size)
    return other, [other.first_fit(p, np.shape(f)) for p, f in zip(probs, frames)]


def _disagree(est: GaEstimator, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], batch_size: int
              ) -> tuple[GaEstimator, list[HeadFit], list[int]]:
    """The second first stage (as an estimator), its fits, and the heads where it and the main first stage's
    ``fits`` differ by more than ``GATE`` (a head the main one never found stays unmeasured)."""
    other, firsts = _first_stage(est, est.second, frames, batch_size)
    at = [i for i, (f, g) in enumerate(zip(fits, firsts))
          if f.found and g.found and first_gap(f, g, est.offset_px) > GATE]
    return other, firsts, at


def _tie_break(est: GaEstimator, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], batch_size: int
               ) -> dict[int, tuple[HeadFit, HeadFit]]:
    """By head index, the crop-stage fits from the second and the third first stage's starts, for the heads the
    first two disagree on and the third one finds (tie_breaker.py); empty where they agree everywhere."""
    other, firsts, at = _disagree(est, frames, fits, batch_size)
    if not at:
        return {}
    third, thirds = _first_stage(est, est.third, [frames[i] for i in at], batch_size)
    kept = [(i, t) for i, t in zip(at, thirds) if t.found]
    if not kept:
        return {}
    at, pick = [i for i, _ in kept], [frames[i] for i, _ in kept]
    seconds = _crop_refined(other, pick, [firsts[i] for i in at], batch_size)
    return dict(zip(at, zip(seconds, _crop_refined(third, pick, [t for _, t in kept], batch_size))))


def _median_fits(est: GaEstimator, frames: Sequence[np.ndarray], crops: Sequence[HeadFit],
                 trio: dict[int, tuple[HeadFit, HeadFit]], batch_size: int) -> list[HeadFit]:
    """``crops`` (crop-stage fits of the main starts) through the polar refiner (if any), and where ``trio`` has
    the other two starts of a head, the median of the three measured alike (tie_breaker.median_of_three)."""
    at = sorted(trio)
    others = [f for i in at for f in trio[i]]
    if est.polar:
        out = polar_fits(est.polar[0], frames, crops, est.offset_px, batch_size)
        others = polar_fits(est.polar[0], [frames[i] for i in at for _ in range(2)], others, est.offset_px,
                            batch_size)
    else:
        out = list(crops)
    for k, i in enumerate(at):
        out[i] = median_of_three(out[i], others[2 * k], others[2 * k + 1], est.offset_px)
    return out


def _second_opinion(est: GaEstimator, frames: Sequence[np.ndarray], fits: Sequence[HeadFit],
                    crops: Sequence[HeadFit], batch_size: int) -> dict[int, HeadFit]:
    """The second first stage's crop-stage fits that are much smaller than ``crops`` (the crop-stage fits from the
    main first stage's ``fits``), by head index (second_opinion.py): the candidates. Only the heads whose two
    first-stage fits differ by more than ``GATE`` are crop-refined twice."""
    other, firsts, at = _disagree(est, frames, fits, batch_size)
    seconds = list(crops)
    for i, fit in zip(at, _crop_refined(other, [frames[i] for i in at], [firsts[i] for i in at], batch_size)):
        seconds[i] = fit
    taken, take = second_opinion(crops, seconds, est.offset_px, est.second_tau)
    return {int(i): taken[i] for i in np.flatnonzero(take)}


def _crop_refined(est: GaEstimator, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], batch_size: int
                  ) -> list[HeadFit]:
    out = list(fits)
    todo = [i for i, f in enumerate(fits) if f.found]
    if not est.refiners or not todo:
        return out
    tta = est.tta if est.refine_tta is None else est.refine_tta
    second = dataclasses.replace(est, segmenter=est.refiners[0], members=est.refiners[1:], refiners=(), tta=tta,
                                 polar=())
    _, refined, ious = crop_fits(second, [frames[i] for i in todo], [fits[i].ellipse for i in todo],
                                 est.crop_margin, batch_size)
    for i, fit in zip(todo, refined):
        if fit.found and fit.hc_px(est.offset_px) <= est.refine_max_growth * fits[i].hc_px(est.offset_px):
            out[i] = fit
    rescue = [i for i, iou in zip(todo, ious) if iou < est.rescue_iou]
    if rescue and est.rescue_scales:
        found = search_fits(second, [frames[i] for i in rescue], [fits[i] for i in rescue], est.crop_margin,
                            est.rescue_scales, batch_size)
        for i, best in zip(rescue, found):
            if best is not None:
                out[i] = best[0]
    return out


def fits_for(est: GaEstimator, frames: Sequence[np.ndarray], batch_size: int = BATCH) -> list[HeadFit]:
    """One HeadFit per frame (native pixel coordinates)."""
    x = {s: frames_to_batch(frames, s, est.canvas_pad) for s in est.input_sizes}
    probs = batch_probabilities(est, x, batch_size)
    shapes = [np.shape(f) for f in frames]
    fits = refine_fits(est, frames, [est.first_fit(p, s) for p, s in zip(probs, shapes)], batch_size)
    echo = [has_echo(a[0].numpy()) for a in x[est.input_sizes[0]]]
    return _outside(est, _echo_free_have_no_head(fits, echo), shapes)


def has_echo(model_input: np.ndarray) -> bool:
    """Whether a first-stage input (``frame_to_input``: [-1, 1]) shows echoes: at least ``MIN_ECHO_FRACTION`` of
    its pixels brighter than ``ECHO_LEVEL``."""
    return float((np.asarray(model_input) > ECHO_LEVEL / 127.5 - 1.0).mean()) >= MIN_ECHO_FRACTION


def _echo_free_have_no_head(fits: Sequence[HeadFit], echo: Sequence[bool]) -> list[HeadFit]:
    return [f if e else HeadFit(None) for f, e in zip(fits, echo)]


def _outside(est: GaEstimator, fits: Sequence[HeadFit], shapes: Sequence[tuple[int, int]]) -> list[HeadFit]:
    """``fits`` with the share of each measured ellipse (semi-axes grown by the offset) beyond its frame
    (``HeadFit.outside_fraction``)."""
    grow = est.offset_px
    return [dataclasses.replace(f, outside_fraction=ellipse_outside(
        f.ellipse.cx, f.ellipse.cy, f.ellipse.a + grow, f.ellipse.b + grow, f.ellipse.angle, s)) if f.found else f
        for f, s in zip(fits, shapes)]


def _check_pixel_sizes(names: Sequence[str], pixel_size_mm: Sequence[float | None]) -> None:
    for n, px in zip(names, pixel_size_mm):
        if px is None:
            raise SonoshiftError(f"{n} has no pixel size: HC in mm needs one (give --pixel-size MM or a CSV; a "
                                 "DICOM may state its own).")
        if not np.isfinite(px) or px <= 0:
            raise SonoshiftError(f"{n} has pixel size {px}: it must be a positive number of mm per pixel.")


def _records(est: GaEstimator, names, fits: Sequence[HeadFit], pixel_size_mm) -> list[dict]:
    recs = []
    for n, fit, px in zip(names, fits, pixel_size_mm):
        hc_px = fit.hc_px(est.offset_px)
        hc_mm = hc_px * float(px)
        found = fit.found and math.isfinite(hc_px) and not fit.outline_confidence < MIN_OUTLINE_CONFIDENCE
        if not found:
            hc_px = hc_mm = math.nan
        e = fit.ellipse if found else None
        recs.append({
            "name": n, "status": "ok" if found else "no head found", "head_found": found,
            "pixel_size_mm": float(px), "hc_px": hc_px, "hc_mm": hc_mm,
            "ga_hadlock_weeks": hadlock_ga_from_hc(hc_mm) if found else math.nan,
            "ga_intergrowth_weeks": intergrowth_ga_weeks(hc_mm) if found else math.nan,
            "border_fraction": fit.border_fraction, "outline_confidence": fit.outline_confidence,
            "outside_fraction": fit.outside_fraction if found else math.nan,
            "second_opinion": bool(found and fit.second_opinion),
            "cx": e.cx if e else math.nan, "cy": e.cy if e else math.nan,
            "a_px": e.a + est.offset_px if e else math.nan, "b_px": e.b + est.offset_px if e else math.nan,
            "angle": e.angle if e else math.nan,
        })
    return recs


def measure(
    est: GaEstimator, frames: Sequence[np.ndarray], pixel_size_mm: Sequence[float | None], batch_size: int = BATCH,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per frame: head_found, hc_px, hc_mm, ga_hadlock_weeks, ga_intergrowth_weeks, border_fraction,
    outline_confidence (the polar refiner's; NaN without one), outside_fraction (the share of the measured ellipse
    beyond the frame: how much of the head was extrapolated across the border), second_opinion (measured from the
    second first stage's start, second_opinion.py), ellipse.

    ``pixel_size_mm`` gives mm per native pixel for each frame; a missing one (None / NaN) is an error naming
    the frame. A frame with no head found (nothing segmented, no echo in the frame (``has_echo``), or a polar
    refiner less sure of the outline than ``MIN_OUTLINE_CONFIDENCE``, as on a blank frame) gets NaN measurements
    and ``status`` "no head found". The estimator measures the head of a head image: it does not tell a head plane
    from another plane (`classify`)."""
    names = list(names) if names is not None else [f"frame {i}" for i in range(len(frames))]
    _check_pixel_sizes(names, pixel_size_mm)
    return pd.DataFrame.from_records(_records(est, names, fits_for(est, frames, batch_size), pixel_size_mm))


def measure_files(
    est: GaEstimator, paths: Sequence[str | Path | FrameRef], pixel_size_mm: Sequence[float | None],
    batch_size: int | None = None, workers: int = 2, names: Sequence[str] | None = None, lanes: int = 1,
) -> pd.DataFrame:
    """``measure`` for image files or DICOM frames (``data.frame_inputs``), streamed: ``workers`` threads decode
    and resize the next batch while the network runs on this one (PNG decoding and OpenCV release the GIL), so
    only one batch of native frames is ever held. Same table as ``measure``; names default to the paths.

    ``lanes`` > 1: that many threads each take a whole batch through every stage (decode included, so ``workers``
    is not used), at most two batches per lane held at once. The networks and OpenCV release the GIL, so on two
    cores two lanes whose networks run on one intra-op thread each (``onnx_net.with_runtime(threads=1)``) keep
    both cores busy where one lane of two-thread networks leaves them waiting on each other (bench/ga_speed.py
    prints the ratio). The rows are the same, in the same order, whatever the batch size (None: ``BATCH`` in one
    lane, ``LANE_BATCH`` in several)."""
    paths = [p if isinstance(p, FrameRef) else FrameRef(Path(p)) for p in paths]
    pixel_size_mm = list(pixel_size_mm)
    names = list(names) if names is not None else [str(p) for p in paths]
    _check_pixel_sizes(names, pixel_size_mm)
    if lanes < 1:
        raise SonoshiftError(f"lanes must be at least 1, got {lanes}.")
    if batch_size is None:
        batch_size = BATCH if lanes == 1 else LANE_BATCH
    if batch_size < 1:
        raise SonoshiftError(f"the batch size must be at least 1, got {batch_size}.")
    batches = [slice(i, i + batch_size) for i in range(0, len(paths), batch_size)]
    load = _loader(est)
    if lanes == 1:
        parts = _streamed(est, paths, batches, load, batch_size, workers)
    else:
        parts = _in_lanes(est, paths, batches, load, batch_size, lanes)
    recs = [r for j, fits in zip(batches, parts) for r in _records(est, names[j], fits, pixel_size_mm[j])]
    return pd.DataFrame.from_records(recs)


def _loader(est: GaEstimator):
    """frame -> (the native frame, or only its shape when no later stage needs it; the frame at each model size)."""
    keep = _later(est)  # later stages need the native frame

    def load(ref: FrameRef) -> tuple[np.ndarray | tuple[int, int], list[np.ndarray]]:
        f = read_frame(ref)
        return (f if keep else f.shape), [frame_to_input(f, s, est.canvas_pad) for s in est.input_sizes]

    return load


def _later(est: GaEstimator) -> bool:
    """Whether anything follows the first stage (and so needs the native frames)."""
    return bool(est.refiners or est.polar or est.border or est.scale_check is not None or est.second is not None)


def _batch_fits(est: GaEstimator, loaded, batch_size: int) -> list[HeadFit]:
    """Every stage's fits of one batch of ``_loader`` results."""
    x = {s: torch.from_numpy(np.stack([a[j] for _, a in loaded])[:, None]) for j, s in enumerate(est.input_sizes)}
    probs = batch_probabilities(est, x, batch_size)
    shapes = [f.shape if isinstance(f, np.ndarray) else f for f, _ in loaded]
    fits = [est.first_fit(p, s) for p, s in zip(probs, shapes)]
    if _later(est):
        fits = refine_fits(est, [f for f, _ in loaded], fits, batch_size)
    echo = [has_echo(a[0]) for _, a in loaded]
    return _outside(est, _echo_free_have_no_head(fits, echo), shapes)


def _streamed(est, paths, batches, load, batch_size: int, workers: int):
    """One batch at a time, the next one decoded meanwhile by ``workers`` threads (yields each batch's fits)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = [pool.submit(load, p) for p in paths[batches[0]]] if batches else []
        for k in range(len(batches)):
            loaded = [f.result() for f in pending]
            pending = [pool.submit(load, p) for p in paths[batches[k + 1]]] if k + 1 < len(batches) else []
            yield _batch_fits(est, loaded, batch_size)


def _in_lanes(est, paths, batches, load, batch_size: int, lanes: int):
    """``lanes`` threads, each measuring whole batches (yields each batch's fits in order)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    def run(j: slice) -> list[HeadFit]:
        return _batch_fits(est, [load(p) for p in paths[j]], batch_size)

    with ThreadPoolExecutor(lanes) as pool:
        pending: deque = deque()
        for j in batches:
            pending.append(pool.submit(run, j))
            if len(pending) >= 2 * lanes:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
