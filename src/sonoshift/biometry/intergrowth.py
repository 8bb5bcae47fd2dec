"""INTERGROWTH-21st head-circumference formulas (pure functions, numpy in and out).

- Gestational age from HC (Papageorghiou et al., "Ultrasound-based gestational-age estimation in late
  pregnancy", Ultrasound Obstet Gynecol 2016;48:719-726): log_e(GA days) = 0.05970 (log_e HC)^2
  + 0.000000006409 HC^3 + 3.3258, HC in mm. The paper's worked example: HC 250 mm -> 189.8 days.
- HC for GA (Papageorghiou et al., "International standards for fetal growth based on serial ultrasound
  measurements", Lancet 2014;384:869-879), GA in exact weeks (14-40), HC in mm:
  mean = -28.2849 + 1.69267 GA^2 - 0.397485 GA^2 log_e(GA);
  SD = 1.98735 + 0.0136772 GA^3 - 0.00726264 GA^3 log_e(GA) + 0.000976253 GA^3 (log_e GA)^2.
  Centiles are mean + z SD (the standard is normal at each GA).
- The HC18-paper "valid prediction": the true HC lies inside the 2.5th-97.5th centile band of the predicted GA.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

GA_RANGE_WEEKS = (14.0, 40.0)  # where the HC-for-GA standard is defined


def ga_days_from_hc(hc_mm):
    """Gestational age in days from head circumference in mm (INTERGROWTH-21st 2016); float or array."""
    hc = np.asarray(hc_mm, dtype=np.float64)
    ga = np.exp(0.05970 * np.log(hc) ** 2 + 0.000000006409 * hc**3 + 3.3258)
    return float(ga) if ga.ndim == 0 else ga


def ga_weeks_from_hc(hc_mm):
    """Gestational age in weeks from head circumference in mm (INTERGROWTH-21st 2016)."""
    return ga_days_from_hc(hc_mm) / 7.0


def hc_mean_sd(ga_weeks):
    """(mean, SD) of HC in mm at gestational age ``ga_weeks`` (INTERGROWTH-21st 2014); float or array."""
    t = np.asarray(ga_weeks, dtype=np.float64)
    lt = np.log(t)
    mean = -28.2849 + 1.69267 * t**2 - 0.397485 * t**2 * lt
    sd = 1.98735 + 0.0136772 * t**3 - 0.00726264 * t**3 * lt + 0.000976253 * t**3 * lt**2
    if mean.ndim == 0:
        return float(mean), float(sd)
    return mean, sd


def hc_centile(ga_weeks, centile: float):
    """HC in mm at ``centile`` (in (0, 100)) for gestational age ``ga_weeks``."""
    mean, sd = hc_mean_sd(ga_weeks)
    return mean + norm.ppf(centile / 100.0) * sd


def hc_zscore(hc_mm, ga_weeks):
    """z-score of an HC (mm) at gestational age ``ga_weeks``."""
    mean, sd = hc_mean_sd(ga_weeks)
    return (np.asarray(hc_mm, dtype=np.float64) - mean) / sd


def valid_prediction(hc_true_mm, ga_pred_weeks, band=(2.5, 97.5)):
    """True where the true HC lies inside the ``band`` centiles for the predicted GA (bool or bool array).

    A predicted GA outside 14-40 weeks (where the standard is defined) is clipped to that range first."""
    ga = np.clip(np.asarray(ga_pred_weeks, dtype=np.float64), *GA_RANGE_WEEKS)
    lo, hi = hc_centile(ga, band[0]), hc_centile(ga, band[1])
    hc = np.asarray(hc_true_mm, dtype=np.float64)
    ok = (hc >= lo) & (hc <= hi)
    return bool(ok) if np.ndim(ok) == 0 else ok
