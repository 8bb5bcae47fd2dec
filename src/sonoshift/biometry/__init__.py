"""Fetal biometry formulas, one place each (pure functions, no I/O):

- ``hadlock``: gestational age from head circumference and the Hadlock size-on-age curves (HC, BPD, AC, FL);
- ``ellipse``: the ellipse perimeter (Ramanujan) and the axes of an ellipse of given perimeter.
"""
