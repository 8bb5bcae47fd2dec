"""The polar refiner: a third look at each head, along rays of the estimated ellipse at native resolution.

The crop refiner (head_crop.py) sees a head in a 128 px square, so on a third-trimester HC18 head one of its pixels
is about 1 mm and one pixel of radius is ~6 mm of HC. The polar refiner samples the native image along ``angles``
rays of the estimated ellipse, from ``s_min`` to ``s_max`` times its outline (polar.py), so the outline runs across
a (radii, angles) strip at a few tenths of a mm per row. A U-Net (one output channel, wrap-padded along the angles)
gives per column a distribution over rows (softmax over the column); its mode's neighbourhood gives a sub-row
outline point per ray, and the trimmed direct ellipse fit (head_fit.py) turns the points into an ellipse. That is
repeated ``iterations`` times from the new ellipse, with flip averaging (rays in reverse order) when ``tta``, and
the estimate is ``blend`` x the polar ellipse + (1 - ``blend``) x the ellipse it started from (the two refiners
err differently: docs/judges.md, session 22).

Training (``train_polar_refiner``): every step draws training images, moves their reference ellipse (centre by
``shift`` x the mean semi-axis, each semi-axis by a log-normal factor of sd ``size``, the angle by ``turn_deg``) as
a stand-in for an estimate, samples the strip around it and asks for the rows where its rays meet the reference
ellipse (cross-entropy against the two rows next to the exact crossing). The reference ellipse is the one fitted to
the annotation mask, grown by the calibrated offset (head_fit.offset_for_fits), i.e. the ellipse whose perimeter is
the reference HC, so the polar fit needs no offset of its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from sonoshift.config import to_dict
from sonoshift.downstream.ellipse import EllipseFit
from sonoshift.downstream.segmenter import Segmenter, build_unet
from sonoshift.errors import SonoshiftError
from sonoshift.judges.ga.border_cut import training_cuts, zero_cut
from sonoshift.judges.ga.head_fit import HeadFit, fit_head, offset_for_fits, trimmed_ellipse
from sonoshift.judges.ga.polar import Ellipse, PolarGrid, exit_rows, ray_hits, rows_to_points, sample_polar
from sonoshift.progress import track

POLAR_KEY = "head_polar"
PAD = 16  # angles wrapped onto each side of the strip, so the U-Net sees the outline as a closed curve
WINDOW = 4  # rows each side of a column's mode that its sub-row estimate averages over


def wrap_angles(x: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """(..., angles) -> (..., angles + 2 pad): the last ``pad`` columns before, the first ``pad`` after."""
    return torch.cat([x[..., -pad:], x, x[..., :pad]], -1)


def column_logits(model: nn.Module, strips: torch.Tensor) -> torch.Tensor:
    """(B, radii, angles) row logits of (B, 1, radii, angles) normalized strips."""
    return model(wrap_angles(strips))[:, 0, :, PAD:-PAD]


def column_loss(logits: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each column's softmax over rows against the two rows next to the fractional target row
    (weights 1 - f and f); ``rows`` (B, angles), clipped to the strip."""
    radii = logits.shape[1]
    logp = torch.log_softmax(logits, 1)
    r = rows.clamp(0, radii - 1)
    lo = r.floor().long().clamp(0, radii - 2)
    w = r - lo.to(r.dtype)
    target = torch.zeros_like(logp)
    target.scatter_(1, lo[:, None], (1 - w)[:, None])
    target.scatter_add_(1, (lo + 1)[:, None], w[:, None])
    return -(target * logp).sum(1).mean()


def drop_at_exit(rows: np.ndarray, exits: np.ndarray, radii: int) -> np.ndarray:
    """``rows`` with NaN for the rays that leave the image (``exits`` below ``radii``, polar.exit_rows) and
    whose outline is found within one row of that exit: a ray whose skull lies beyond the image border is trained
    to point at the border (``training_batch``), so such a point is the border, not the skull."""
    return np.where((exits < radii) & (rows > exits - 2), np.nan, rows)


def decode_scored(logits: torch.Tensor, window: int = WINDOW) -> tuple[np.ndarray, float]:
    """``decode_rows`` and ``outline_confidence`` of one (radii, angles) strip's logits from one softmax (each
    column's probabilities, zero beyond ``window`` rows of its mode)."""
    p = torch.softmax(logits.float(), 0).cpu().numpy()
    near = np.abs(np.arange(p.shape[0])[:, None] - p.argmax(0)[None, :]) <= window
    w = np.where(near, p, 0.0)
    mass = w.sum(0)
    return (w * np.arange(w.shape[0])[:, None]).sum(0) / np.maximum(mass, 1e-12), float(mass.mean())


def decode_rows(logits: torch.Tensor, window: int = WINDOW) -> np.ndarray:
    """(angles,) sub-row outline position per column of (radii, angles) logits: the probability-weighted mean row
    within ``window`` rows of the column's most probable row (a second mode elsewhere does not pull it)."""
    return decode_scored(logits, window)[0]


def outline_confidence(logits: torch.Tensor, window: int = WINDOW) -> float:
    """How sure the network is of the outline in a (radii, angles) strip: the probability within ``window`` rows of
    each column's mode, averaged over the columns (1: every column certain; a uniform column, whose mode is taken at
    row 0: (window + 1) / radii)."""
    return decode_scored(logits, window)[1]


def normalize_strip(strip: np.ndarray) -> np.ndarray:
    return ((strip - strip.mean()) / (strip.std() + 1e-3)).astype(np.float32)


def fit_points(points: np.ndarray, shape: tuple[int, int], scale: float) -> Ellipse | None:
    """The trimmed direct ellipse fit (head_fit.py) of native (N, 2) x, y points, dropping those within 2 pixels
    of the image border (a head cut by the border has no outline there); None when fewer than 6 remain."""
    h, w = shape
    x, y = points[:, 0], points[:, 1]
    keep = np.isfinite(x) & np.isfinite(y) & (x > 2) & (x < w - 3) & (y > 2) & (y < h - 3)
    if keep.sum() < 6:
        return None
    e = trimmed_ellipse(points[keep].astype(np.float32), scale)
    return None if e is None else (e.cx, e.cy, e.a, e.b, e.angle)


def blend_ellipses(e1: Ellipse, e2: Ellipse, w: float) -> Ellipse:
    """(1 - w) e1 + w e2 for centre and semi-axes; the angle averaged on the doubled-angle circle (an ellipse's
    orientation has period 180 degrees), weighted by each ellipse's eccentricity (a circle has no orientation)."""
    t1, t2 = math.radians(2 * e1[4]), math.radians(2 * e2[4])
    k1, k2 = (1 - w) * (e1[2] - e1[3]), w * (e2[2] - e2[3])
    ang = 0.5 * math.degrees(math.atan2(k1 * math.sin(t1) + k2 * math.sin(t2), k1 * math.cos(t1) + k2 * math.cos(t2)))
    a, b = (1 - w) * e1[2] + w * e2[2], (1 - w) * e1[3] + w * e2[3]
    return ((1 - w) * e1[0] + w * e2[0], (1 - w) * e1[1] + w * e2[1], max(a, b), min(a, b), ang if a >= b else ang + 90)


@dataclasses.dataclass(frozen=True)
class PolarRefiner:
    """A trained polar refiner and how to apply it (read from its checkpoint's ``info.head_polar``). ``members``:
    more networks trained on the same grid (other seeds); every network's column logits are averaged."""

    segmenter: Segmenter
    grid: PolarGrid
    iterations: int = 2
    tta: bool = True
    blend: float = 0.5
    members: tuple[Segmenter, ...] = ()

    @classmethod
    def from_segmenter(cls, seg: Segmenter) -> PolarRefiner:
        meta = seg.info[POLAR_KEY]
        return cls(seg, PolarGrid(**meta["grid"]), int(meta["iterations"]), bool(meta["tta"]), float(meta["blend"]))

    @classmethod
    def from_segmenters(cls, segs: Sequence[Segmenter], tta: bool | None = None) -> PolarRefiner:
        """One refiner of several polar networks: the first one's grid and application settings (``tta`` None:
        its own flip averaging), the others as ``members``; they must share the grid."""
        first = cls.from_segmenter(segs[0])
        for s in segs[1:]:
            grid = PolarGrid(**s.info[POLAR_KEY]["grid"])
            if grid != first.grid:
                raise SonoshiftError(f"polar refiners of one estimator must sample the same grid, got {first.grid} and "
                                     f"{grid}.")
        return dataclasses.replace(first, members=tuple(segs[1:]), tta=first.tta if tta is None else bool(tta))

    @property
    def networks(self) -> tuple[Segmenter, ...]:
        return (self.segmenter, *self.members)

    def logits(self, strips: np.ndarray) -> torch.Tensor:
        """(B, radii, angles) logits of normalized strips (B, radii, angles), averaged over the networks and, when
        ``tta``, over the rays read in reverse order (mirror)."""
        dev = next(self.segmenter.model.parameters()).device
        x = torch.from_numpy(np.ascontiguousarray(strips))[:, None].to(dev)
        if self.tta:  # the rays in reverse order (mirror), gathered once for every network
            rev = torch.as_tensor((-np.arange(self.grid.angles)) % self.grid.angles, device=dev)
            mirrored = x[..., rev]
        outs = []
        with torch.no_grad():
            for seg in self.networks:
                outs.append(column_logits(seg.model, x))
                if self.tta:
                    outs.append(column_logits(seg.model, mirrored)[..., rev])
        return torch.stack(outs).mean(0).cpu()

    def refine(self, frames: Sequence[np.ndarray], priors: Sequence[Ellipse]) -> list[Ellipse]:
        """One polar ellipse per (uint8 frame, prior HC ellipse in native pixels), ``iterations`` rounds, then
        blended with the prior; the prior itself where the fit fails."""
        return self.refine_scored(frames, priors)[0]

    def refine_scored(self, frames: Sequence[np.ndarray], priors: Sequence[Ellipse]
                      ) -> tuple[list[Ellipse], list[float]]:
        """``refine``'s ellipses and, per frame, the last round's ``outline_confidence``."""
        images = [np.asarray(f, np.float32) / 255.0 for f in frames]
        current, confidence = list(priors), [math.nan] * len(priors)
        for _ in range(self.iterations):
            strips = np.stack([normalize_strip(sample_polar(im, e, self.grid)) for im, e in zip(images, current)])
            logits = self.logits(strips)
            new, confidence = [], []
            for im, e, lg in zip(images, current, logits):
                rows, sure = decode_scored(lg)
                rows = drop_at_exit(rows, exit_rows(e, self.grid, im.shape), self.grid.radii)
                pts = rows_to_points(e, rows, self.grid)
                new.append(fit_points(pts, im.shape, self.grid.spacing(e)) or e)
                confidence.append(sure)
            current = new
        return [blend_ellipses(p, c, self.blend) for p, c in zip(priors, current)], confidence


def polar_fits(refiner: PolarRefiner, frames: Sequence[np.ndarray], fits: Sequence[HeadFit], offset_px: float,
               batch_size: int = 32) -> list[HeadFit]:
    """``fits`` (native ellipses whose HC is ``hc_px(offset_px)``) refined by the polar refiner, each with its
    ``outline_confidence``; not-found fits stay."""
    out = list(fits)
    todo = [i for i, f in enumerate(fits) if f.found]
    for start in range(0, len(todo), batch_size):
        part = todo[start:start + batch_size]
        priors = []
        for i in part:
            e = fits[i].ellipse
            priors.append((e.cx, e.cy, e.a + offset_px, e.b + offset_px, e.angle))
        refined, confidence = refiner.refine_scored([frames[i] for i in part], priors)
        for i, r, c in zip(part, refined, confidence):
            ell = EllipseFit(cx=r[0], cy=r[1], a=r[2] - offset_px, b=r[3] - offset_px, angle=r[4])
            out[i] = dataclasses.replace(fits[i], ellipse=ell, outline_confidence=c)
    return out


def reference_ellipses(masks: Sequence[np.ndarray], hc_px_true: Sequence[float] = (), offset: float | None = None
                       ) -> tuple[list[Ellipse], float]:
    """The annotation masks' fitted ellipses grown by ``offset`` (None: the offset calibrated on them against their
    true HC in pixels, ``hc_px_true``, so that perimeter = reference HC); None where a mask gives no ellipse."""
    fits = [fit_head(np.asarray(m, np.float32), m.shape) for m in masks]
    if offset is None:
        offset = offset_for_fits(fits, list(hc_px_true))
    out = [(e.cx, e.cy, e.a + offset, e.b + offset, e.angle) if e is not None else None
           for e in (f.ellipse for f in fits)]
    return out, offset


def moved(truth: Ellipse, shift: float, size: float, turn_deg: float, rng: np.random.Generator) -> Ellipse:
    """A stand-in estimate: ``truth`` with its centre, semi-axes and angle perturbed (see the module doc)."""
    cx, cy, a, b, ang = truth
    m = 0.5 * (a + b)
    return (cx + rng.normal(0, shift) * m, cy + rng.normal(0, shift) * m, a * math.exp(rng.normal(0, size)),
            b * math.exp(rng.normal(0, size)), ang + rng.normal(0, turn_deg))


def strip_and_rows(img: np.ndarray, truth: Ellipse, prior: Ellipse, grid: PolarGrid) -> tuple[np.ndarray, np.ndarray]:
    """The normalized strip of float ``img`` around ``prior`` and, per ray, the row where it meets ``truth`` (the
    last row where it does not)."""
    strip = normalize_strip(sample_polar(img, prior, grid))
    return strip, np.nan_to_num(ray_hits(prior, truth, grid), nan=grid.radii - 1)


def training_batch(images: Sequence[np.ndarray], truths: Sequence[Ellipse], grid: PolarGrid, n: int, cfg,
                   rng: np.random.Generator, masks: Sequence[np.ndarray] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 1, radii, angles) strips and (n, angles) target rows, with gamma, noise and mirror augmentation; with
    ``cfg.cut_heads`` and the annotation ``masks``, that share of the strips comes from the image blacked out
    beyond a border that cuts the head (border_cut.py), and a ray whose outline lies there (or within a row of it)
    is asked for the row where it meets that border (``drop_at_exit`` then drops it at use)."""
    xs, ys = [], []
    g = cfg.train.gamma
    cut_share = cfg.cut_heads if len(masks) else 0.0
    for _ in range(n):
        i = int(rng.integers(len(images)))
        img = images[i]
        if g > 0:
            img = img ** math.exp(rng.uniform(-1, 1) * math.log1p(g))
        prior = moved(truths[i], cfg.polar.shift, cfg.polar.size, cfg.polar.turn_deg, rng)
        cut = training_cuts(1, cut_share, cfg.cut_max, rng)[0] if cut_share else None
        if cut is not None:
            img = zero_cut(img, masks[i], *cut)
        strip, rows = strip_and_rows(img, truths[i], prior, grid)
        if cut is not None:  # an outline beyond the new border is not in the image: point at the border
            seen = sample_polar(zero_cut(np.ones(img.shape, np.float32), masks[i], *cut), prior, grid) > 0.5
            first_out = np.where(seen.all(0), grid.radii, (~seen).argmax(0))
            rows = np.where(rows < first_out - 1, rows, first_out).astype(np.float64)
        strip = strip + rng.normal(0, cfg.train.noise_std, strip.shape).astype(np.float32)
        if cfg.train.hflip and rng.random() < 0.5:
            rev = (-np.arange(grid.angles)) % grid.angles
            strip, rows = strip[:, rev], rows[rev]
        xs.append(strip)
        ys.append(rows)
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys).astype(np.float32))


def strip_errors(model: nn.Module, images: Sequence[np.ndarray], truths: Sequence[Ellipse], grid: PolarGrid,
                 perturb: tuple[float, float, float], seed: int = 0, repeats: int = 4,
                 batch_size: int = 32) -> dict[str, float]:
    """How well ``model`` finds the reference outline on strips of float ``images`` (0-1) sampled around their
    ``truths`` moved as in training (``perturb``: shift, size, turn_deg of a PolarSpec; ``repeats`` draws per image from
    ``seed``, no other augmentation): the column loss and the mean absolute row error of the decoded outline. On
    training images against held-out ones it shows how much the network has over-fitted."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for _ in range(repeats):
        for img, truth in zip(images, truths):
            strip, rows = strip_and_rows(img, truth, moved(truth, *perturb, rng), grid)
            xs.append(strip)
            ys.append(rows)
    if not xs:
        return {"column_loss": math.nan, "row_error": math.nan, "strips": 0}
    x = torch.from_numpy(np.stack(xs)[:, None])
    rows = torch.from_numpy(np.stack(ys).astype(np.float32))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dev = next(model.parameters()).device
        logits = torch.cat([column_logits(model, x[i:i + batch_size].to(dev)).cpu()
                            for i in range(0, len(x), batch_size)])
    model.train(was_training)
    decoded = np.stack([decode_rows(lg) for lg in logits])
    row_error = np.abs(decoded - rows.clamp(0, grid.radii - 1).numpy()).mean()
    return {"column_loss": float(column_loss(logits, rows)), "row_error": float(row_error), "strips": len(xs)}


def _references(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray], hc_px_true: Sequence[float] = (),
                offset: float | None = None) -> tuple[list[np.ndarray], list[Ellipse], float, list[np.ndarray]]:
    """Float images, ``reference_ellipses`` and masks of the frames whose mask gives an ellipse, and the offset."""
    truths, offset = reference_ellipses(masks, hc_px_true, offset)
    keep = [i for i, t in enumerate(truths) if t is not None]
    return ([np.asarray(frames[i], np.float32) / 255.0 for i in keep], [truths[i] for i in keep], offset,
            [np.asarray(masks[i]) for i in keep])


def validate_polar_refiner(seg: Segmenter, frames: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                           seed: int = 0) -> dict[str, float]:
    """``strip_errors`` of a trained polar refiner on uint8 ``frames`` and their masks (references grown by the
    offset stored at training), with the perturbation it was trained with."""
    meta = seg.info[POLAR_KEY]
    images, truths, _, _ = _references(frames, masks, offset=float(meta["label_offset_px"]))
    spec = seg.config["polar"]
    perturb = (float(spec["shift"]), float(spec["size"]), float(spec["turn_deg"]))
    return strip_errors(seg.model, images, truths, PolarGrid(**meta["grid"]), perturb, seed)


def train_polar_refiner(cfg, frames: Sequence[np.ndarray], masks: Sequence[np.ndarray],
                        hc_px_true: Sequence[float], device: str | torch.device = "cpu",
                        progress: bool = True) -> Segmenter:
    """Train the polar refiner of ``cfg`` (an Hc18Config with ``head_polar``) on uint8 frames and their masks;
    returns it as a Segmenter (one output channel, ``info.head_polar`` says how to apply it)."""
    images, truths, offset, kept_masks = _references(frames, masks, hc_px_true)
    p = cfg.polar
    grid = PolarGrid(p.angles, p.radii, p.s_min, p.s_max)
    rng = np.random.default_rng(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    model = build_unet(cfg.model, 1).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    steps = cfg.train.steps
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
    model.train()
    losses = []
    for _ in track(range(steps), "train HC18 polar refiner", disable=not progress):
        x, rows = training_batch(images, truths, grid, cfg.train.batch_size, cfg, rng, kept_masks)
        loss = column_loss(column_logits(model, x.to(device)), rows.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    info = {POLAR_KEY: {"grid": dataclasses.asdict(grid), "iterations": p.iterations, "tta": p.tta,
                        "blend": p.blend, "label_offset_px": offset, "train_images": len(images)},
            "final_loss": float(np.mean(losses[-50:])) if losses else math.nan}
    return Segmenter(model=model.cpu(), classes=("outline",), image_size=grid.radii, config=to_dict(cfg), info=info)
