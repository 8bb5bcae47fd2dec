"""Downstream judges: a fetal plane classifier (``plane``) and a gestational-age estimator (``ga``)."""
