"""Heads cut by the image border: how a training image is made into one, and how the benchmark makes them.

A handheld sweep often leaves part of the head outside the frame. HC18 has almost no such image (one held-out head
touches the border), so networks trained on it draw a cut head as a smaller closed head inside the image
(bench/ga_border.py). ``cut_line`` puts the border across the head so that a share ``cut`` of the head mask's extent
leaves the image on ``side`` (0 left, 1 right, 2 top, 3 bottom); ``crop_to_cut`` removes those pixels (the frame
gets smaller, as a real cut frame is), ``zero_cut`` blacks them out and keeps the frame's shape (the same thing seen
through a crop or a polar strip, which are zero outside the frame). ``training_cuts`` draws which training images
get a cut copy, how much and on which side, from a seeded generator.
"""

from __future__ import annotations

import math

import numpy as np

from sonoshift.judges.ga.head_crop import window
from sonoshift.judges.ga.polar import beyond_frame, ray_directions

SIDES = 4


def cut_line(mask: np.ndarray, cut: float, side: int) -> int:
    """The index of the new border: along x for ``side`` 0 / 1, along y for 2 / 3; on ``side`` 0 / 2 the pixels
    before it leave the image, on 1 / 3 those from it on."""
    ys, xs = np.nonzero(np.asarray(mask))
    if not len(xs):
        raise ValueError("the mask holds no head to cut.")
    v = xs if side < 2 else ys
    lo, hi = int(v.min()), int(v.max())
    return int(round(lo + cut * (hi - lo))) if side in (0, 2) else int(round(hi - cut * (hi - lo))) + 1


def _kept(mask: np.ndarray, cut: float, side: int) -> tuple[slice, slice]:
    """The (rows, columns) slices of the pixels that stay in the image."""
    k, every = cut_line(mask, cut, side), slice(None)
    part = slice(k, None) if side in (0, 2) else slice(None, k)
    return (every, part) if side < 2 else (part, every)


def crop_to_cut(img: np.ndarray, mask: np.ndarray, cut: float, side: int) -> np.ndarray:
    """``img`` (H, W) without the pixels that ``cut_line`` puts outside the image (a smaller array)."""
    return img[_kept(mask, cut, side)]


def zero_cut(img: np.ndarray, mask: np.ndarray, cut: float, side: int) -> np.ndarray:
    """A copy of ``img`` with the pixels that ``cut_line`` puts outside the image set to 0 (same shape)."""
    out = np.zeros_like(img)
    kept = _kept(mask, cut, side)
    out[kept] = img[kept]
    return out


def training_cuts(n: int, share: float, max_cut: float, rng: np.random.Generator) -> list[tuple[float, int] | None]:
    """For each of ``n`` training images: (cut, side) for a cut copy, with probability ``share``, the cut uniform in
    (0, ``max_cut``] and the side uniform; None for no copy. Draws the same numbers whatever ``share`` is, so the
    images that get a copy at a smaller share also get it at a larger one."""
    u = rng.random((n, 3))
    return [(float(max_cut * (1 - a)), int(b * SIDES)) if p < share else None for p, a, b in u]


def cut_copies(n: int, share: float, max_cut: float, copies: int, rng: np.random.Generator
               ) -> list[tuple[int, tuple[float, int]]]:
    """(image index, (cut, side)) of every cut copy of ``n`` training images: ``copies`` successive
    ``training_cuts`` draws from ``rng``, so the first block is what a single copy gets."""
    return [(i, c) for _ in range(copies) for i, c in enumerate(training_cuts(n, share, max_cut, rng)) if c]


def ellipse_border_gap(cx: float, cy: float, a: float, b: float, angle: float, shape: tuple[int, int]) -> float:
    """How far an ellipse (native pixels, OpenCV angle in degrees) stays inside an image of ``shape`` (H, W): the
    smallest distance from its bounding box to the outer pixel centres, in units of its semi-minor axis ``b``
    (negative where it crosses the border)."""
    h, w = shape
    t = math.radians(angle)
    half_w = math.hypot(a * math.cos(t), b * math.sin(t))
    half_h = math.hypot(a * math.sin(t), b * math.cos(t))
    return min(cx - half_w, w - 1 - cx - half_w, cy - half_h, h - 1 - cy - half_h) / b


def ellipse_outside(cx: float, cy: float, a: float, b: float, angle: float, shape: tuple[int, int],
                    n: int = 720) -> float:
    """The share of an ellipse's perimeter (native pixels, OpenCV angle in degrees, ``a`` along it; by arc length,
    ``n`` points) that lies outside an image of ``shape`` (H, W), beyond the outer pixels' edges. A head measured
    from such an ellipse was extrapolated across the border."""
    dx, dy = ray_directions((cx, cy, a, b, angle), n)  # the outline at n evenly spaced parameter angles
    x, y = cx + dx, cy + dy
    step = np.hypot(np.diff(x, append=x[0]), np.diff(y, append=y[0]))
    length = 0.5 * (step + np.roll(step, 1))  # each point's share of the arc
    return float(length[beyond_frame(x, y, shape)].sum() / length.sum())


def canvas_padding(shape: tuple[int, int], pad: float) -> tuple[int, int]:
    """(rows, columns) of zeros that a canvas adds on each side of a frame of ``shape`` (H, W): ``pad`` of each."""
    return int(round(pad * shape[0])), int(round(pad * shape[1]))


def pad_canvas(img: np.ndarray, pad: float) -> np.ndarray:
    """``img`` (H, W) in the middle of its canvas (zeros around it, ``canvas_padding``)."""
    ph, pw = canvas_padding(np.shape(img), pad)
    return np.pad(np.asarray(img), ((ph, ph), (pw, pw)))


def amodal_canvas(img: np.ndarray, mask: np.ndarray, pad: float, cut: float = 0.0, side: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A training pair for an amodal network: the frame cut by ``cut`` on ``side`` (``crop_to_cut``; 0 = uncut)
    on its canvas, and the *whole* head mask on the same canvas (the head beyond the new border included, as far as
    the canvas reaches)."""
    rows, cols = _kept(mask, cut, side) if cut > 0 else (slice(None), slice(None))
    r0, r1, _ = rows.indices(img.shape[0])
    c0, c1, _ = cols.indices(img.shape[1])
    ph, pw = canvas_padding((r1 - r0, c1 - c0), pad)
    frame = pad_canvas(np.asarray(img)[r0:r1, c0:c1], pad)
    return frame, window(np.asarray(mask), c0 - pw, r0 - ph, frame.shape[1], frame.shape[0])
