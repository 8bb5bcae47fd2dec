"""Burned-in scanner overlay in the margins: vendor logo and text, patient id, depth scale, frame counter, clock.

Everything is drawn outside the fan, at least ``GAP`` pixels away from it, so a field-of-view crop that keeps the
largest region of changing pixels keeps the fan and drops the overlay (the clock and counter change, but they are
small and separate from the fan).
"""

from __future__ import annotations

import cv2
import numpy as np

from sonoshift.sim.profiles import Overlay, Profile
from sonoshift.sim.scan_convert import View

GAP = 3
_FONT = cv2.FONT_HERSHEY_PLAIN


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, level: int) -> None:
    cv2.putText(img, text, org, _FONT, scale, int(level), 1, cv2.LINE_AA)


def _logo(img: np.ndarray, style: Overlay, x: int, y: int, s: int) -> None:
    level = int(style.text_level)
    if style.logo == "circle":
        cv2.circle(img, (x + s // 2, y + s // 2), s // 2, level, 1, cv2.LINE_AA)
        cv2.circle(img, (x + s // 2, y + s // 2), max(s // 5, 1), level, -1, cv2.LINE_AA)
    elif style.logo == "diamond":
        pts = np.array([[x + s // 2, y], [x + s, y + s // 2], [x + s // 2, y + s], [x, y + s // 2]], np.int32)
        cv2.fillPoly(img, [pts], level)
    else:  # bars
        w = max(s // 4, 1)
        for i in range(3):
            h = s * (i + 1) // 3
            cv2.rectangle(img, (x + i * (w + 1), y + s - h), (x + i * (w + 1) + w - 1, y + s), level, -1)


def static_layer(view: View, profile: Profile, patient_id: str) -> np.ndarray:
    """The overlay that never changes during a cine-loop (uint8, S x S, 0 where nothing is drawn)."""
    S = view.size
    img = np.zeros((S, S), dtype=np.uint8)
    style = profile.overlay
    k = S / 256.0
    s = max(int(10 * k), 5)
    _logo(img, style, int(3 * k), int(3 * k), s)
    _text(img, style.vendor, (int(5 * k) + s, int(11 * k)), 0.7 * k, style.text_level)
    _text(img, f"{style.model}  ID {patient_id}", (int(3 * k), int(24 * k)), 0.6 * k, style.text_level)
    probe = f"{profile.transducer.center_mhz:.1f}MHz D{profile.geometry.depth_cm:.0f}"
    _text(img, probe, (int(3 * k), S - int(16 * k)), 0.6 * k, style.text_level)
    # Depth scale: a tick per cm beside the fan's right edge, a number every 5 cm.
    col = S - int(6 * k)
    for cm in range(0, int(profile.geometry.depth_cm) + 1):
        row = view.depth_row(cm)
        if row >= S - 2:
            break
        length = int(4 * k) if cm % 5 == 0 else int(2 * k)
        cv2.line(img, (col, row), (col + length, row), int(style.text_level), 1)
        if cm % 5 == 0 and cm > 0:
            _text(img, str(cm), (col - int(11 * k), row + int(3 * k)), 0.55 * k, style.text_level)
    focus_row = view.depth_row(profile.transducer.focus_cm)
    tri = np.array([[col - 1, focus_row], [col - int(5 * k), focus_row - int(3 * k)],
                    [col - int(5 * k), focus_row + int(3 * k)]], np.int32)
    cv2.fillPoly(img, [tri], int(style.text_level))
    return img


def dynamic_layer(view: View, profile: Profile, frame: int, n_frames: int, clock_s: float) -> np.ndarray:
    """Overlay that changes every frame: frame counter and clock (with hundredths), uint8 S x S."""
    S = view.size
    img = np.zeros((S, S), dtype=np.uint8)
    k = S / 256.0
    level = profile.overlay.text_level
    hh, rem = divmod(clock_s, 3600.0)
    mm, ss = divmod(rem, 60.0)
    clock = f"{int(hh) % 24:02d}:{int(mm):02d}:{ss:05.2f}"
    _text(img, clock, (S - int(68 * k), int(11 * k)), 0.65 * k, level)
    _text(img, f"{frame + 1:03d}/{n_frames:03d}", (int(3 * k), S - int(4 * k)), 0.6 * k, level)
    return img


def keep_out(view: View) -> np.ndarray:
    """Pixels where the overlay may not draw: the fan dilated by GAP pixels (bool, S x S)."""
    kernel = np.ones((2 * GAP + 1, 2 * GAP + 1), np.uint8)
    return cv2.dilate(view.mask.astype(np.uint8), kernel).astype(bool)


def burn_in(image: np.ndarray, layers: list[np.ndarray], forbidden: np.ndarray) -> np.ndarray:
    """Draw overlay layers onto a fan image (uint8, S x S) everywhere except ``forbidden`` pixels."""
    out = image.copy()
    for layer in layers:
        draw = (layer > 0) & ~forbidden
        out[draw] = layer[draw]
    return out
