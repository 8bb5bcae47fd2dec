"""Downstream tasks: segmenters that show whether harmonization helps a model trained on another scanner.

- ``segmenter``: MONAI U-Net build / train / predict / safetensors checkpoints.
- ``target_segmenter``: trained on the target domain of a prepared (simulated) dataset with its label maps.
- ``evaluate_seg``: ``evaluate_segmentation(run_dir, segmenter_ckpt, out_csv=None)`` -> per-frame Dice/HD95.
- ``hc18`` / ``head_eval``: fetal-head segmenter on HC18 and head proxies on FETAL_PLANES_DB, raw vs harmonized.
"""

from sonoshift.downstream.evaluate_seg import evaluate_segmentation, summarize_segmentation
from sonoshift.downstream.segmenter import Segmenter, load_segmenter, predict, save_segmenter

__all__ = [
    "Segmenter",
    "evaluate_segmentation",
    "load_segmenter",
    "predict",
    "save_segmenter",
    "summarize_segmentation",
]
