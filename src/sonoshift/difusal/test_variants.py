"""The test-time variants every stage is also scored under, beside the raw test frames (real data; one registry
line each). Each adds metric columns ``<key>_<measure>`` to ``metrics.json``, a predictions file for the paired
intervals and report rows ``<arm><suffix>``.

- harmonized (``data.harmonizer``): the test frames translated toward the training domain by a translator
  (pixel-level harmonization; the same downstream models).
- adapted (``data.adapt_bn``): the downstream plane classifier re-normalized on the unlabelled images of
  ``data.unlabelled_path`` (the African adaptation part): AdaBN, its BatchNorm statistics re-estimated, no label
  read (feature-level harmonization, ``judges.plane.adapt``); the raw test frames.
- adapted_zoomed (``data.adapt_zooms`` with ``data.adapt_bn``): the plane classifier as a test-time zoom ensemble
  (``judges.plane.zoom``), re-normalized on those images at each zoom; the raw test frames.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestVariant:
    key: str  # metric prefix and predictions file stem
    suffix: str  # appended to the arm's name in the report
    label: str  # what the report's third curve panel says


VARIANTS: tuple[TestVariant, ...] = (
    TestVariant("harmonized", " + harmonized test", "harmonized test"),
    TestVariant("adapted", " + adapted BN", "AdaBN-adapted classifiers"),
    TestVariant("adapted_zoomed", " + adapted BN at zooms", "zoom ensembles, AdaBN per zoom"),
)


def predictions_file(key: str) -> str:
    """The predictions file of a variant in a stage folder."""
    return f"test_predictions_{key}.npz"


__all__ = ["VARIANTS", "TestVariant", "predictions_file"]
