"""Plane label of a frame: head, abdomen, femur or other, from the slice geometry and what the fan shows.

Head (transthalamic-like): the plane is within 30 degrees of transverse to the fetal body axis, passes through the
thalami, and the fan shows thalami. Abdomen: transverse within 30 degrees, passes through the stomach, which the
fan shows. Femur: a femur lies within 20 degrees of the plane, within its own radius plus 2 mm of it, and the fan
shows at least half of its length. Otherwise: other.
"""

from __future__ import annotations

import math

import numpy as np

from sonoshift.sim.phantom import Phantom
from sonoshift.sim.primitives import Plane
from sonoshift.sim.tissues import LABEL

PLANES: tuple[str, ...] = ("head", "abdomen", "femur", "other")


def plane_label(phantom: Phantom, plane: Plane, labels: np.ndarray, px_per_cm: float) -> str:
    """Classify a frame. ``labels`` is the frame's label map (any grid), ``px_per_cm`` its sampling density."""
    lm = phantom.landmarks
    n = plane.normal
    axis = lm["fetal_frame"][0]
    transverse = abs(float(n @ axis)) > math.cos(math.radians(30))
    counts = np.bincount(labels.ravel(), minlength=256)
    if transverse and abs(float((lm["head_center"] - plane.origin) @ n)) < lm["thalamus_radius"]:
        if counts[LABEL["thalami"]] > 0 and counts[LABEL["skull"]] > 0:
            return "head"
    if transverse and abs(float((lm["abdomen_center"] - plane.origin) @ n)) < lm["stomach_radius"]:
        if counts[LABEL["stomach"]] > 0:
            return "abdomen"
    for p0, p1 in lm["femurs"]:
        v = p1 - p0
        in_plane = abs(float(v @ n)) / float(np.linalg.norm(v)) < math.sin(math.radians(20))
        near = max(abs(float((p - plane.origin) @ n)) for p in (p0, p1)) < lm["femur_radius"] + 0.2
        if in_plane and near:
            visible_cm = counts[LABEL["femur"]] / px_per_cm**2 / (2 * lm["femur_radius"])
            if visible_cm >= 0.5 * lm["femur_length"]:
                return "femur"
    return "other"
