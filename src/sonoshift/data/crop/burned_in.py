"""Burned-in overlays that lie on top of the ultrasound image (zoomed frames whose image reaches the edges).

Vendor text, logos and parameter blocks sit in the corners of the frame, grey bars and swatches at its left or
right edge. Where the image itself reaches there, the shape of the field of view cannot exclude them, so they
are found directly: text as thin bright strokes (white top-hat) grouped into blocks inside the corner zones;
bars as rows of identical pixels forming a vertical grey ramp next to the frame edge. The returned masks cover
the bounding box of each element, grown by a small margin, so anti-aliased edges and drop shadows go too.
"""

from __future__ import annotations

import cv2
import numpy as np

import sonoshift.data.crop.morphology as morph
from sonoshift.data.crop.config import CropConfig


def corner_zones(shape: tuple[int, int], config: CropConfig) -> np.ndarray:
    """Bool (H, W): the four corner zones where burned-in text is searched (fractions from the config)."""
    h, w = shape
    zone = np.zeros(shape, bool)
    top, bottom = int(round(config.text_zone_top * h)), int(round((1 - config.text_zone_bottom) * h))
    side = int(round(config.text_zone_side * w))
    for rows in (slice(0, top), slice(bottom, h)):
        zone[rows, :side] = True
        zone[rows, w - side :] = True
    return zone


def overlay_text_mask(frame: np.ndarray, config: CropConfig) -> np.ndarray:
    """Bool (H, W) mask of text blocks in the corner zones of a uint8 frame (H, W); all False when none.

    A stroke pixel is bright (>= text_min_level), stands out from its surroundings (white top-hat >=
    text_contrast) and has a near-black pixel within 2 px (text is drawn on black or with a black shadow;
    bright speckle in tissue rarely is) -- or it is near-white (>= 200) and stands out twice as much (white
    text drawn straight onto the image). Strokes join into glyphs no taller than a text line; glyphs close to
    each other join into blocks; each block's bounding box (plus padding) is returned.
    """
    shape = frame.shape
    r = morph.radius_px(config.text_stroke_radius, shape)
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1))
    tophat = cv2.morphologyEx(frame, cv2.MORPH_TOPHAT, kernel)
    local_min = cv2.erode(frame, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 5)))
    bright = (tophat >= config.text_contrast) & (frame >= config.text_min_level)
    shadowed = bright & (local_min <= config.text_dark_level)
    # white text drawn straight onto the image (no shadow): much brighter than its surroundings
    white = (tophat >= 2 * config.text_contrast) & (frame >= 200)
    strokes = (shadowed | white) & corner_zones(shape, config)
    out = np.zeros(shape, np.uint8)
    if not strokes.any():
        return out.astype(bool)
    max_height = config.text_max_height * shape[0] + 2
    n, labels, stats, _ = cv2.connectedComponentsWithStats(strokes.astype(np.uint8), connectivity=8)
    ok = (stats[:, cv2.CC_STAT_HEIGHT] <= max_height) & (stats[:, cv2.CC_STAT_WIDTH] <= 4 * max_height)
    ok[0] = False
    glyphs = ok[labels]
    if not glyphs.any():
        return out.astype(bool)
    gap = morph.radius_px(config.text_gap, shape)
    blocks = cv2.dilate(glyphs.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (2 * gap + 1, 2 * gap + 1)))
    n, block_labels, stats, _ = cv2.connectedComponentsWithStats(blocks, connectivity=8)
    # glyphs per block: a text block holds several separate glyphs, a fragment of bright tissue one or two
    glyph_ids = labels[glyphs]
    first = np.unique(glyph_ids, return_index=True)[1]
    ys, xs = np.nonzero(glyphs)
    per_block = np.bincount(block_labels[ys[first], xs[first]], minlength=n)
    pad = morph.radius_px(config.text_pad, shape)
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        if per_block[i] < config.text_min_glyphs:
            continue
        if int((strokes[y : y + bh, x : x + bw]).sum()) < config.text_min_pixels:
            continue
        out[max(0, y - pad) : y + bh + pad, max(0, x - pad) : x + bw + pad] = 1
    return out.astype(bool)


def flat_runs(frame: np.ndarray, run: int) -> np.ndarray:
    """Bool (H, W): pixels inside a horizontal run of ``run`` identical values >= 16 (flat UI, not speckle)."""
    h, w = frame.shape
    run = max(2, int(run))
    out = np.zeros(frame.shape, bool)
    if w < run:
        return out
    starts = frame[:, : w - run + 1] >= 16
    for k in range(1, run):
        starts &= frame[:, k : w - run + 1 + k] == frame[:, : w - run + 1]
    for k in range(run):  # mark the whole run, not only its first pixel
        out[:, k : w - run + 1 + k] |= starts
    return out


def overlay_bar_mask(frame: np.ndarray, config: CropConfig) -> np.ndarray:
    """Bool (H, W) mask of grey bars / swatches at the left and right frame edges of a uint8 frame (H, W).

    A bar pixel starts a horizontal run of ``bar_run`` identical, non-dark values (speckle never repeats a value
    that long; a grey-scale bar is constant along each row). Runs touching the edge band that form a component
    at least ``bar_min_height`` (fraction of H) tall whose values span a ramp (>= 64 levels) are bars.
    """
    h, w = frame.shape
    runs = flat_runs(frame, config.bar_run).astype(np.uint8)
    band = int(round(config.bar_band * w))
    runs[:, band : w - band] = 0
    out = np.zeros(frame.shape, np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
    pad = morph.radius_px(config.text_pad, frame.shape)
    for i in range(1, n):
        x, y, bw, bh, _ = stats[i]
        if bh < config.bar_min_height * h:
            continue
        values = frame[labels == i]
        if int(values.max()) - int(values.min()) < 64:
            continue
        out[max(0, y - pad) : y + bh + pad, max(0, x - pad) : x + bw + pad] = 1
    return out.astype(bool)
