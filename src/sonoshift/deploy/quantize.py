"""int8 quantization of an exported model (ONNX Runtime's quantizer).

- "static": weights int8 per channel, activations uint8 with ranges calibrated (min/max) on real frames, in the
  QDQ format ORT fuses into int8 kernels; needs calibration frames (the source domain of a prepared dataset);
- "dynamic": weights of convolutions and matrix products int8, activation ranges computed per call; needs no
  data (slower convolutions in ORT).
Its quality cost is measured by ``bench/realtime.py`` (GT PSNR/SSIM of the int8 model next to fp32).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader

from sonoshift.errors import SonoshiftError

MODES = ("static", "dynamic")
# dynamic mode quantizes only the weighted layers: left to its defaults ORT also turns the histogram anchor's
# lookup tables (Gather on constant levels/quantiles) into int8, which merges neighbouring levels and made the
# anchored student divide by zero (NaN in 0.5% of pixels)
DYNAMIC_OPS = ("Conv", "MatMul")
CALIBRATION_FRAMES = 32


def calibration_frames(source: Any, image_size: tuple[int, int], domain: str, n: int = CALIBRATION_FRAMES,
                       seed: int = 0) -> np.ndarray:
    """Up to ``n`` uint8 frames (n, H, W) at ``image_size``: ``source`` is such an array (any size, resized) or a
    prepared dataset folder (its train frames of ``domain``, drawn without replacement by a seeded generator)."""
    from sonoshift.inference.translate import resize_batch, to_signed, to_uint8

    if isinstance(source, (str, Path)):
        from sonoshift.data.cache import load_cache

        frames = load_cache(source, "train", domain)
        idx = np.sort(np.random.default_rng(seed).permutation(len(frames))[:n])
        frames = np.asarray(frames[idx])
    else:
        frames = np.asarray(source, dtype=np.uint8)[:n]
    if frames.ndim != 3 or len(frames) == 0:
        raise SonoshiftError("int8 calibration needs at least one frame (uint8 (N, H, W)).")
    return to_uint8(resize_batch(to_signed(frames), tuple(image_size)))


class _Reader(CalibrationDataReader):
    """ORT CalibrationDataReader over frames, one at a time (batch 1), with seeded noise for stochastic graphs."""

    def __init__(self, frames: np.ndarray, steps: int, nz: int) -> None:
        from sonoshift.deploy.graphs import NoiseSpec, draw_noise
        from sonoshift.inference.translate import to_signed

        self.items = []
        g = torch.Generator().manual_seed(0)
        for f in frames:
            x = to_signed(f[None])
            feed = {"x": x.numpy()}
            if steps:
                noise, z = draw_noise(NoiseSpec(steps, nz), 1, tuple(x.shape[-2:]), g)
                feed.update(noise=noise.numpy(), z=z.numpy())
            self.items.append(feed)
        self._it = iter(self.items)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self.items)


def quantize_bytes(model_bytes: bytes, mode: str, calibration: Any = None) -> bytes:
    """The int8 version of an exported model (bytes in, bytes out; sonoshift metadata kept, ``quantization`` set).

    ``calibration`` (static only): uint8 frames (N, H, W) or a prepared dataset folder (source-domain train
    frames).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from sonoshift.deploy.export import read_metadata, with_metadata

    if mode not in MODES:
        raise SonoshiftError(f"unknown int8 mode '{mode}'; choose one of {', '.join(MODES)}.")
    meta = read_metadata({p.key: p.value for p in onnx.load_from_string(model_bytes).metadata_props})
    if mode == "static" and calibration is None:
        raise SonoshiftError("static int8 quantization needs calibration frames (--calibration DATASET, a prepared "
                             "dataset); or use --int8 dynamic.")
    with tempfile.TemporaryDirectory(prefix="sonoshift-int8-") as tmp:
        src, pre, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=list(DYNAMIC_OPS))
        else:
            frames = calibration_frames(calibration, tuple(meta["image_size"]), meta["source_domain"])
            reader = _Reader(frames, int(meta["noise"]["steps"]), int(meta["noise"]["nz"]))
            quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        data = dst.read_bytes()
    return with_metadata(data, {**meta, "quantization": f"int8-{mode}"})


__all__ = ["DYNAMIC_OPS", "MODES", "calibration_frames", "quantize_bytes"]
