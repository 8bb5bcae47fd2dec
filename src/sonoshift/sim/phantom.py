"""A procedural 3D phantom of a pregnant abdomen whose fetus follows gestational age.

Mother coordinates in cm: x to the mother's left, y towards her head (fundus), z into the body (0 at the skin).
The fetus has its own frame (a: towards the fetal head, b: fetal left, c: fetal belly) placed with a random
presentation, tilt and roll. Sizes come from the Hadlock curves (HC, BPD, AC, FL) of ``biometry/hadlock.py``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from sonoshift.biometry import hadlock
from sonoshift.biometry.ellipse import ellipse_axes_from_circumference
from sonoshift.sim.primitives import BlockFn, Capsule, PackedShapes, Ellipsoid, Plane, Shape, frame_from_axis, rasterize
from sonoshift.sim.tissues import LABEL as L

_FLUID = (L["amniotic_fluid"],)
_AROUND = (L["amniotic_fluid"], L["placenta"])
_FETAL_SOFT = (L["fetal_soft_tissue"],)
_ORGANS = (L["fetal_soft_tissue"], L["liver"], L["lung"], L["heart"])


@dataclass(frozen=True)
class Phantom:
    """One patient: shapes painted in order, GA (weeks), and landmarks used by sweeps and plane labels.

    landmarks: 'uterus_center' (3,), 'uterus_radii' (3,) cavity semi-axes (cm), 'fetal_frame' (3, 3) rows a, b, c,
    'head_center', 'thalamus_radius', 'abdomen_center', 'stomach_radius', 'femurs' (2, 2, 3) segments (cm).
    """

    ga_weeks: float
    shapes: tuple[Shape, ...]
    landmarks: dict = field(default_factory=dict)

    @functools.cached_property
    def packed(self) -> PackedShapes:
        return PackedShapes(self.shapes)

    def slice(self, plane: Plane, X: np.ndarray, Y: np.ndarray, block: BlockFn | None = None) -> np.ndarray:
        """uint8 label ids (tissues.LABEL) at the plane samples (X, Y) (cm); ``block`` as in ``rasterize``."""
        return rasterize(self.packed, plane, X, Y, background=L["maternal_wall"], block=block)


def _ell(label: int, center, frame: np.ndarray, radii, over=None) -> Ellipsoid:
    return Ellipsoid(label, np.asarray(center, float), frame, np.asarray(radii, float), over)


def _cap(label: int, p0, p1, radius: float, over=None) -> Capsule:
    return Capsule(label, np.asarray(p0, float), np.asarray(p1, float), float(radius), over)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def build_phantom(ga_weeks: float, rng: np.random.Generator) -> Phantom:
    """A random patient at gestational age ``ga_weeks`` (weeks, 14-42); all randomness from ``rng``."""
    ga = float(ga_weeks)
    hc, ac, fl = hadlock.head_circumference_cm(ga), hadlock.abdominal_circumference_cm(ga), hadlock.femur_length_cm(ga)
    # The transthalamic section is an ellipse of perimeter HC with cephalic index BPD/OFD = 0.8.
    ofd_half, bpd_half = ellipse_axes_from_circumference(hc, 0.8)
    ofd, bpd = 2 * ofd_half, 2 * bpd_half
    r_b, r_c = ellipse_axes_from_circumference(ac, 0.9)
    trunk_len = 0.42 * hc
    h = trunk_len / 2
    neck = 0.08 * hc
    head_r = np.array([0.42 * ofd, bpd / 2, ofd / 2])  # along a, b, c

    # Mother: fat + muscle, then the uterus.
    fat = rng.uniform(1.0, 2.8)
    wall = rng.uniform(0.5, 0.9)
    cav = np.array([0.78, 1.0, 0.62]) * (0.5 * (trunk_len + neck + 2 * head_r[0]) + 1.5)
    cav[2] = max(cav[2], r_c + 2.5)
    uc = np.array([rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0), fat + wall + cav[2]])
    eye = np.eye(3)
    # Subcutaneous fat under the skin (a huge flat ellipsoid whose top is the skin), muscle below it.
    big = 200.0
    shapes: list[Shape] = [
        _ell(L["maternal_fat"], [0, 0, fat * 0.75 - big], eye, [big, big, big]),
        _ell(L["uterine_wall"], uc, eye, cav + wall),
        _ell(L["amniotic_fluid"], uc, eye, cav, over=(L["uterine_wall"],)),
    ]
    # Placenta: a thick disc on the cavity wall (anterior, posterior, fundal or lateral).
    side = _unit(
        [
            [0, 0, -1],
            [0, 0, 1],
            [0, 1, 0.3],
            [rng.choice([-1, 1]), 0, 0.3],
        ][int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1]))]
        + rng.normal(0, 0.15, 3)
    )
    surf = uc + side / np.sqrt(np.sum((side / cav) ** 2))
    thick = 1.8 + 0.06 * ga
    pframe = frame_from_axis(side, rng.uniform(0, np.pi))
    shapes.append(_ell(L["placenta"], surf, pframe, [thick, 0.35 * cav[1] + 3, 0.35 * cav[1] + 3], over=_FLUID))

    # Fetal pose: cephalic (head towards the pelvis, -y) or breech, tilted, rolled.
    head_dir = -1.0 if rng.random() < 0.8 else 1.0
    axis = _unit([rng.uniform(-0.35, 0.35), head_dir, rng.uniform(-0.25, 0.25)])
    fr = frame_from_axis(axis, rng.uniform(0, 2 * np.pi))
    a, b, c = fr
    total = trunk_len + neck + 2 * head_r[0]
    mid = uc + rng.normal(0, 0.4, 3) * np.array([1, 1, 0.5])
    rump = mid - a * total / 2
    tc = rump + a * h  # trunk centre
    hcen = rump + a * (trunk_len + neck + head_r[0])

    def at(pa, pb, pc, base=tc):
        return base + pa * a + pb * b + pc * c

    # Limbs first (soft tissue), so the trunk paints over their roots.
    femurs = []
    limbs_bones: list[Shape] = []
    for sgn in (-1, 1):
        hip = at(-0.8 * h, sgn * 0.55 * r_b, 0.1 * r_c)
        fdir = _unit(0.35 * a + 0.9 * c + sgn * 0.25 * b + rng.normal(0, 0.25, 3))
        knee = hip + fl * fdir
        femurs.append(np.stack([hip, knee]))
        shin_dir = _unit(-0.9 * a + 0.3 * c + rng.normal(0, 0.3, 3))
        ankle = knee + 0.9 * fl * shin_dir
        shapes += [_cap(L["fetal_soft_tissue"], hip, knee, 0.24 * fl + 0.2, _AROUND),
                   _cap(L["fetal_soft_tissue"], knee, ankle, 0.17 * fl + 0.15, _AROUND),
                   _cap(L["fetal_soft_tissue"], ankle, ankle + 0.35 * fl * _unit(c + rng.normal(0, .3, 3)),
                        0.1 * fl + 0.1, _AROUND)]
        bone_r = 0.045 * fl + 0.06
        limbs_bones += [_cap(L["femur"], hip + 0.05 * fl * fdir, knee - 0.05 * fl * fdir, bone_r, _FETAL_SOFT),
                        _cap(L["limb_bone"], knee + 0.08 * fl * shin_dir, ankle - 0.05 * fl * shin_dir,
                             0.8 * bone_r, _FETAL_SOFT)]
        shoulder = at(0.75 * h, sgn * 0.85 * r_b, 0.0)
        udir = _unit(-0.5 * a + 0.8 * c + sgn * 0.3 * b + rng.normal(0, 0.3, 3))
        elbow = shoulder + 0.9 * fl * udir
        wrist = elbow + 0.8 * fl * _unit(0.8 * a + 0.4 * c + rng.normal(0, 0.35, 3))
        shapes += [_cap(L["fetal_soft_tissue"], shoulder, elbow, 0.15 * fl + 0.15, _AROUND),
                   _cap(L["fetal_soft_tissue"], elbow, wrist, 0.12 * fl + 0.12, _AROUND)]
        limbs_bones += [_cap(L["limb_bone"], shoulder + 0.1 * fl * udir, elbow - 0.05 * fl * udir,
                             0.7 * bone_r, _FETAL_SOFT)]
    # Umbilical cord: a wavy chain from the belly towards the placenta.
    cord_r = 0.5 + 0.01 * ga
    p = at(-0.4 * h, 0.0, r_c)
    towards = _unit(surf - p)
    for _ in range(4):
        q = p + 3.0 * _unit(towards + rng.normal(0, 0.7, 3))
        shapes.append(_cap(L["fetal_soft_tissue"], p, q, cord_r, _FLUID))
        shapes.append(_cap(L["umbilical_vein"], p, q, 0.35 * cord_r, _FETAL_SOFT))
        p = q

    around_fetal = _AROUND + _FETAL_SOFT
    shapes += [
        _ell(L["fetal_soft_tissue"], tc, fr, [h, r_b, r_c], over=around_fetal),
        _cap(L["fetal_soft_tissue"], at(0.8 * h, 0, 0), hcen - a * 0.3 * head_r[0], 0.5 * r_b, over=around_fetal),
        _ell(L["fetal_soft_tissue"], hcen, fr, head_r + 0.25, over=around_fetal),
        # Face: a soft-tissue bulge at the front of the head, below the eyes.
        _ell(L["fetal_soft_tissue"], hcen + 0.7 * head_r[2] * c - 0.45 * head_r[0] * a, fr,
             [0.5 * head_r[0], 0.55 * head_r[1], 0.4 * head_r[2]], over=around_fetal),
    ]
    # Thorax and abdomen organs.
    shapes += [
        _ell(L["lung"], at(0.45 * h, -0.45 * r_b, -0.1 * r_c), fr, [0.35 * h, 0.45 * r_b, 0.65 * r_c], _ORGANS),
        _ell(L["lung"], at(0.45 * h, 0.45 * r_b, -0.1 * r_c), fr, [0.35 * h, 0.45 * r_b, 0.65 * r_c], _ORGANS),
        _ell(L["heart"], at(0.4 * h, 0.15 * r_b, 0.25 * r_c), fr, [0.25 * h, 0.42 * r_b, 0.42 * r_c], _ORGANS),
        _ell(L["liver"], at(-0.1 * h, -0.2 * r_b, 0.1 * r_c), fr, [0.35 * h, 0.65 * r_b, 0.65 * r_c], _ORGANS),
    ]
    for db in (-1, 1):
        for dc in (-1, 1):
            shapes.append(_ell(L["heart_chambers"], at(0.4 * h, (0.15 + 0.16 * db) * r_b, (0.25 + 0.15 * dc) * r_c),
                               fr, [0.12 * h, 0.13 * r_b, 0.12 * r_c], (L["heart"],)))
    stomach_c = at(-0.22 * h, 0.42 * r_b, 0.05 * r_c)
    stomach_r = np.array([0.2 * h, 0.25 * r_b, 0.2 * r_c])
    shapes += [
        _ell(L["stomach"], stomach_c, fr, stomach_r, _ORGANS),
        _cap(L["umbilical_vein"], at(-0.4 * h, 0, 0.95 * r_c), at(-0.15 * h, -0.15 * r_b, 0.15 * r_c),
             0.07 * r_b + 0.05, _ORGANS),
    ]
    # Spine: one vertebral body and two posterior ossification centres per level.
    levels = 20
    rho = 0.4 * trunk_len / levels
    for s in np.linspace(-0.95 * h, h + 0.7 * neck, levels):
        shapes.append(_ell(L["spine"], at(s, 0, -0.72 * r_c), fr, [rho, 1.3 * rho, rho], _ORGANS))
        for sb in (-1, 1):
            shapes.append(_ell(L["spine"], at(s, sb * 0.2 * r_b, -0.9 * r_c), fr, [0.8 * rho] * 3, _ORGANS))
    # Head: skull shell, brain, thalami, ventricles, cavum septi pellucidi, midline.
    t = 0.12 + 0.008 * ga
    brain_r = head_r - t
    brain = (L["brain"],)
    shapes += [
        _ell(L["skull"], hcen, fr, head_r, over=_FETAL_SOFT),
        _ell(L["brain"], hcen, fr, brain_r, over=(L["skull"],)),
    ]
    th_r = np.array([0.3 * brain_r[0], 0.2 * brain_r[1], 0.2 * brain_r[2]])
    for sb in (-1, 1):
        shapes.append(_ell(L["thalami"], hcen + sb * 0.2 * brain_r[1] * b - 0.08 * brain_r[2] * c, fr, th_r, brain))
        shapes.append(_ell(L["ventricles_csf"], hcen + sb * 0.3 * brain_r[1] * b - 0.45 * brain_r[2] * c
                           + 0.15 * brain_r[0] * a, fr, [0.3 * brain_r[0], 0.09 * brain_r[1], 0.3 * brain_r[2]],
                           brain))
    shapes += [
        _ell(L["midline_falx"], hcen, fr, [0.85 * brain_r[0], 0.035, 0.92 * brain_r[2]], brain),
        _ell(L["ventricles_csf"], hcen + 0.42 * brain_r[2] * c, fr,
             [0.25 * brain_r[0], 0.07 * brain_r[1], 0.1 * brain_r[2]], brain + (L["midline_falx"],)),
    ]
    shapes += limbs_bones
    landmarks = {
        "uterus_center": uc,
        "uterus_radii": cav,
        "fetal_frame": fr,
        "head_center": hcen - 0.08 * brain_r[2] * c,
        "thalamus_radius": float(th_r.max()),
        "abdomen_center": stomach_c,
        "stomach_radius": float(stomach_r.max()),
        "femurs": np.stack(femurs),
        "femur_radius": 0.045 * fl + 0.06,
        "femur_length": fl,
    }
    return Phantom(ga, tuple(shapes), landmarks)
