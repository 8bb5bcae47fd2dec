"""The GA estimator's segmenters run by ONNX Runtime (CPU) instead of PyTorch: the same numbers (to float
rounding), less CPU per image (bench/ga_speed.py --runtime onnx prints the ratio).

Each member network is exported in memory when the estimator is converted (a few seconds, no file written) and
wrapped as an ``nn.Module`` with the torch call signature, so ``batch_probabilities`` and ``measure_files`` use it
unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn

from sonoshift.judges.ga.estimator import GaEstimator
from sonoshift.judges.ga.polar_refiner import PAD

RUNTIMES = ("torch", "onnx")


class OrtNet(nn.Module):
    """A network exported to ONNX (``deploy.export.graph_bytes``) and run by ONNX Runtime: (N, 1, H, W) float
    (``size`` S for H = W = S, or (H, W)) -> its output, on the input's device (inference runs on the CPU). ``threads``: intra-op threads (default: torch's
    count); ``spinning``: whether idle intra-op threads busy-wait (off by default: the estimator's decode threads
    need the cores between calls); ``rewrite``: the exact export rewrites (``deploy.rewrite``; off only to measure
    them)."""

    def __init__(self, model: nn.Module, size: int | tuple[int, int], threads: int | None = None,
                 spinning: bool = False, rewrite: bool = True) -> None:
        super().__init__()
        import onnxruntime as ort

        from sonoshift.deploy.export import graph_bytes
        from sonoshift.deploy.graphs import NoiseSpec
        from sonoshift.deploy.runtime import session_options

        was_training = model.training
        shape = (size, size) if isinstance(size, int) else tuple(size)
        data = graph_bytes(model.cpu().eval(), NoiseSpec(), shape, rewrite=rewrite)  # one-channel input, dynamic batch
        model.train(was_training)
        self.session = ort.InferenceSession(data, session_options(threads, spinning=spinning),
                                            providers=["CPUExecutionProvider"])
        self._anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # so parameters() names a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.session.run(None, {"x": np.ascontiguousarray(x.detach().float().cpu().numpy())})[0]
        return torch.from_numpy(y).to(x.device)


def with_runtime(est: GaEstimator, runtime: str = "torch", threads: int | None = None, spinning: bool = False,
                 rewrite: bool = True) -> GaEstimator:
    """``est`` unchanged for "torch"; for "onnx" the same estimator with every member network in ONNX Runtime
    (``spinning``, ``rewrite``: see :class:`OrtNet`)."""
    if runtime not in RUNTIMES:
        from sonoshift.errors import SonoshiftError

        raise SonoshiftError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}.")
    if runtime == "torch":
        return est

    def convert(seg):
        return dataclasses.replace(seg, model=OrtNet(seg.model, seg.image_size, threads, spinning, rewrite))

    def convert_polar(p):  # its strips are (radii, angles) wrapped by PAD columns on each side
        def net(seg):
            ort_net = OrtNet(seg.model, (p.grid.radii, p.grid.angles + 2 * PAD), threads, spinning, rewrite)
            return dataclasses.replace(seg, model=ort_net)

        return dataclasses.replace(p, segmenter=net(p.segmenter), members=tuple(net(m) for m in p.members))

    return dataclasses.replace(est, segmenter=convert(est.segmenter), members=tuple(convert(m) for m in est.members),
                               refiners=tuple(convert(m) for m in est.refiners),
                               polar=tuple(convert_polar(p) for p in est.polar),
                               scale_check=convert_polar(est.scale_check) if est.scale_check else None,
                               second=convert(est.second) if est.second else None,
                               third=convert(est.third) if est.third else None,
                               border=(with_runtime(est.border, runtime, threads, spinning, rewrite)
                                       if est.border else None))
