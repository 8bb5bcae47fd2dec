"""Image-similarity metrics on batches of [0, 1] images, one value per pair (DESIGN.md §5).

``REGISTRY`` maps every metric name used in ``metrics.csv`` and the report to its function and direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sonoshift.metrics.fid import fid_from_features, fid_kid, kid_from_features
from sonoshift.metrics.histogram import bc, bc_dataset, joint_histogram, mi
from sonoshift.metrics.lncc import lncc
from sonoshift.metrics.lpips import LPIPS, load_lpips, lpips_distance
from sonoshift.metrics.pixel import mae, mse, psnr
from sonoshift.metrics.segmentation import dice, hd95
from sonoshift.metrics.ssim import css, ssim, ssim_maps
from sonoshift.metrics.suite import PAIR_METRICS, pair_metrics


@dataclass(frozen=True)
class MetricSpec:
    """How to compute and read one metric: its function, whether higher is better, its display name and note."""

    fn: Callable | None
    higher_is_better: bool
    display: str
    note: str = ""


REGISTRY: dict[str, MetricSpec] = {
    "psnr": MetricSpec(psnr, True, "PSNR (dB)"),
    "mae": MetricSpec(mae, False, "MAE", "lower is better"),
    "ssim": MetricSpec(ssim, True, "SSIM"),
    "css": MetricSpec(css, True, "CSS"),
    "lncc": MetricSpec(lncc, True, "LNCC"),
    "mi": MetricSpec(mi, True, "MI"),
    "bc": MetricSpec(bc, True, "BC"),
    "lpips_alex": MetricSpec(None, False, "LPIPS-Alex", "lower is better"),
    "lpips_vgg": MetricSpec(None, False, "LPIPS-VGG", "lower is better"),
    "fid": MetricSpec(fid_from_features, False, "FID", "lower is better"),
    "kid": MetricSpec(kid_from_features, False, "KID", "lower is better"),
    "bc_dataset": MetricSpec(bc_dataset, True, "BC (dataset)"),
    "dice": MetricSpec(dice, True, "Dice"),
    "hd95": MetricSpec(hd95, False, "HD95", "lower is better"),
}


def higher_is_better(name: str) -> bool:
    """Direction of a metric column (unknown names count as higher-is-better)."""
    spec = REGISTRY.get(name)
    return True if spec is None else spec.higher_is_better


__all__ = [
    "LPIPS",
    "PAIR_METRICS",
    "REGISTRY",
    "MetricSpec",
    "bc",
    "bc_dataset",
    "css",
    "dice",
    "fid_from_features",
    "fid_kid",
    "hd95",
    "higher_is_better",
    "joint_histogram",
    "kid_from_features",
    "lncc",
    "load_lpips",
    "lpips_distance",
    "mae",
    "mi",
    "mse",
    "pair_metrics",
    "psnr",
    "ssim",
    "ssim_maps",
]
