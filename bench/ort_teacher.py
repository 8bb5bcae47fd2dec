"""Why is the paper-size teacher only ~1.2x faster in ONNX Runtime than in eager PyTorch, and what helps?

One process, batch 1, interleaved calls (so load from other processes hits every variant alike): the paper-size
CycleGAN generator (ngf 64, 9 blocks, transposed-conv upsampling; random weights: speed does not depend on them)
in eager PyTorch and in ONNX Runtime under several session options and export variants:

- ``ORT default``: `sonoshift export onnx` as shipped (dynamic batch/size, opset 17) with `deploy.runtime`'s
  session options (all graph optimizations, sequential, intra-op threads = ``--threads``);
- ``opt basic`` / ``opt extended``: lower graph optimization levels (ENABLE_ALL adds the NCHWc layout transforms);
- ``parallel``: ORT_PARALLEL execution mode (inter-op threads = ``--threads``);
- ``fixed shape``: exported without dynamic axes (shape-specialized kernels, constant shapes folded);
- ``no spinning``: intra-op threads do not busy-wait between ops (matters on a shared machine);
- ``denormals as zero``: flush denormal floats (slow paths on x86) to zero;
- ``native instance norm``: the export copy computes instance norm as ONNX ``InstanceNormalization`` directly
  instead of PyTorch's group-norm export (Reshape -> InstanceNormalization -> Reshape around every norm).
  Instance norm has no running statistics, so it cannot be folded into the convolution (only an affine part
  could be, and these norms have none); removing the reshapes is what lets ORT fuse and keep its blocked layout.

It prints frames/s, p50/p99, each variant's ratio to eager PyTorch, and with ``--profile`` the share of ORT's
time per operator type for the default session (where the time goes).

    python bench/ort_teacher.py --threads 2 --size 256 --frames 20 --profile
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
import torch

from realtime import random_translator, time_variants
from sonoshift.deploy.export import graph_bytes, translator_metadata, with_metadata
from sonoshift.deploy.graphs import NoiseSpec, plain_layers
from sonoshift.deploy.runtime import OnnxTranslator, session_options
from sonoshift.errors import exit_on_error
from sonoshift.models import ResnetGenerator


def fixed_bytes(module: torch.nn.Module, size: int) -> bytes:
    """The module exported at exactly (1, 1, size, size), no dynamic axes."""
    buf = io.BytesIO()
    x = torch.zeros(1, 1, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, dynamo=False, input_names=["x"], output_names=["y"], opset_version=17,
                          do_constant_folding=True)
    return buf.getvalue()


def native_norms(net: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``net`` whose instance norms (``models.norm.InstanceNorm``, computed as PyTorch group norm for
    training speed) are ``nn.InstanceNorm2d`` (no affine, no running statistics): the same function, exported as
    one ONNX ``InstanceNormalization`` instead of Reshape -> InstanceNormalization -> Reshape."""
    import copy

    from sonoshift.models.norm import InstanceNorm

    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, InstanceNorm):
                setattr(parent, name, torch.nn.InstanceNorm2d(child.num_features, eps=child.eps))
    return net


class Session:
    """A raw ORT session as a batch-1 callable (numpy in/out through torch tensors)."""

    def __init__(self, data: bytes, so: Any) -> None:
        import onnxruntime as ort

        self.s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.s.run(["y"], {"x": x.numpy()})[0])


def op_profile(data: bytes, threads: int, size: int, runs: int = 3) -> dict[str, float]:
    """Share of ORT's node time per operator type (default session options) over ``runs`` calls."""
    import onnxruntime as ort

    so = session_options(threads)
    so.enable_profiling = True
    so.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    s = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 1, size, size)).astype(np.float32)
    for _ in range(runs):
        s.run(["y"], {"x": x})
    with open(s.end_profiling()) as f:
        events = json.load(f)
    total: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"]
    s_all = sum(total.values()) or 1.0
    return {k: v / s_all for k, v in sorted(total.items(), key=lambda kv: -kv[1])}


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    size, th = args.size, args.threads
    teacher = random_translator(ResnetGenerator(ngf=64, n_blocks=9), size)
    module = plain_layers(teacher.net)
    spec = NoiseSpec()
    default = with_metadata(graph_bytes(module, spec, (size, size)), translator_metadata(teacher, {}, spec, "bench"))
    native = graph_bytes(native_norms(module), spec, (size, size))

    def so(level: Any = None, mode: Any = None, spin: bool = True, denormal_zero: bool = False) -> Any:
        o = session_options(th)
        if level is not None:
            o.graph_optimization_level = level
        if mode is not None:
            o.execution_mode = mode
            o.inter_op_num_threads = th
        if not spin:
            o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if denormal_zero:
            o.add_session_config_entry("session.set_denormal_as_zero", "1")
        return o

    variants: dict[str, Any] = {
        "eager PyTorch": teacher,
        "ORT default": OnnxTranslator(default, threads=th),
        "ORT opt basic": Session(default, so(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)),
        "ORT opt extended": Session(default, so(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)),
        "ORT parallel": Session(default, so(mode=ort.ExecutionMode.ORT_PARALLEL)),
        "ORT no spinning": Session(default, so(spin=False)),
        "ORT denormals as zero": Session(default, so(denormal_zero=True)),
        "ORT fixed shape": Session(fixed_bytes(module, size), so()),
        "ORT native instance norm": Session(native, so()),
        "ORT native IN + fixed shape": Session(fixed_bytes(native_norms(module), size), so()),
    }
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        ref = teacher(x)
        err = {k: float((fn(x) - ref).abs().max()) for k, fn in variants.items()}
    speed = time_variants(variants, size, args.frames)
    eager = speed["eager PyTorch"]["fps"]
    print(f"\npaper-size teacher (ngf 64, 9 blocks, transposed conv), {size}x{size}, batch 1, {th} threads; "
          f"load average {load_start:.1f} -> {os.getloadavg()[0]:.1f} (2 cores shared: ratios only)")
    print("| variant | frames/s | p50 ms | p99 ms | / eager | max abs diff to eager |\n|---|---|---|---|---|---|")
    for k, v in speed.items():
        print(f"| {k} | {v['fps']:.2f} | {v['p50_ms']:.0f} | {v['p99_ms']:.0f} | {v['fps'] / eager:.2f}x | "
              f"{err[k]:.1e} |")
    out: dict[str, Any] = {"size": size, "threads": th, "speed": speed, "max_abs_diff": err}
    if args.profile:
        prof = {"default": op_profile(default, th, size), "native instance norm": op_profile(native, th, size)}
        out["op_share"] = prof
        for name, shares in prof.items():
            print(f"\nORT time by operator ({name}): "
                  + ", ".join(f"{k} {100 * v:.1f}%" for k, v in list(shares.items())[:8]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    exit_on_error(main)
