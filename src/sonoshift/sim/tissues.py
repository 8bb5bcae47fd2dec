"""Anatomy classes (label ids) and their acoustic properties.

Echo is the mean backscatter amplitude relative to maternal soft tissue; density is the fraction of resolution
sub-cells holding a scatterer (1 = fully developed speckle); attenuation is in dB/cm/MHz (one way); impedance
(MRayl) drives the specular reflection at tissue boundaries; texture is the strength (natural-log units) of the
slow random variation of echogenicity inside the tissue.
"""

from __future__ import annotations

import numpy as np

# (name, echo, density, attenuation dB/cm/MHz, impedance MRayl, texture)
_TABLE = (
    ("outside", 0.0, 1.0, 0.0, 1.50, 0.0),
    ("maternal_wall", 1.00, 1.0, 0.50, 1.66, 0.45),
    ("uterine_wall", 0.85, 1.0, 0.55, 1.64, 0.30),
    ("amniotic_fluid", 0.002, 0.05, 0.002, 1.52, 0.0),
    ("placenta", 1.10, 1.0, 0.50, 1.62, 0.35),
    ("fetal_soft_tissue", 0.80, 1.0, 0.45, 1.63, 0.30),
    ("skull", 5.00, 1.0, 3.00, 3.00, 0.2),
    ("brain", 0.50, 0.7, 0.45, 1.58, 0.35),
    ("ventricles_csf", 0.02, 0.1, 0.002, 1.52, 0.0),
    ("thalami", 0.33, 0.7, 0.45, 1.60, 0.2),
    ("midline_falx", 1.80, 1.0, 0.60, 1.75, 0.0),
    ("stomach", 0.008, 0.05, 0.002, 1.52, 0.0),
    ("liver", 0.70, 1.0, 0.50, 1.65, 0.25),
    ("umbilical_vein", 0.03, 0.05, 0.02, 1.55, 0.0),
    ("spine", 4.50, 1.0, 8.00, 3.00, 0.2),
    ("heart", 0.90, 1.0, 0.50, 1.66, 0.2),
    ("heart_chambers", 0.04, 0.1, 0.02, 1.55, 0.0),
    ("lung", 1.25, 1.0, 0.60, 1.64, 0.15),
    ("femur", 5.50, 1.0, 15.0, 3.50, 0.1),
    ("limb_bone", 4.50, 1.0, 10.0, 3.20, 0.1),
    ("maternal_fat", 0.45, 0.5, 0.50, 1.40, 0.6),
)

LABEL_NAMES: tuple[str, ...] = tuple(row[0] for row in _TABLE)
LABEL = {name: i for i, name in enumerate(LABEL_NAMES)}
ECHO = np.array([row[1] for row in _TABLE], dtype=np.float32)
DENSITY = np.array([row[2] for row in _TABLE], dtype=np.float32)
ATTENUATION_DB_CM_MHZ = np.array([row[3] for row in _TABLE], dtype=np.float32)
IMPEDANCE = np.array([row[4] for row in _TABLE], dtype=np.float32)
TEXTURE = np.array([row[5] for row in _TABLE], dtype=np.float32)
FLUIDS = tuple(LABEL[n] for n in ("amniotic_fluid", "ventricles_csf", "stomach", "umbilical_vein", "heart_chambers"))
BONES = tuple(LABEL[n] for n in ("skull", "spine", "femur", "limb_bone"))
