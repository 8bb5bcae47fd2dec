"""Fetal biometry: head circumference, gestational-age formulas (Hadlock, INTERGROWTH-21st) and centiles."""
