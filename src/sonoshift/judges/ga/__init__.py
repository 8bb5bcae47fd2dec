"""Gestational-age estimator: head segmentation -> ellipse -> head circumference (mm) -> GA by Hadlock and by
INTERGROWTH-21st; HC18 evaluation (HC error, GA error per trimester); a direct image -> GA regressor option."""
