"""Real-time harmonization on a laptop CPU: speed and quality of teacher and student, PyTorch and ONNX Runtime.

Side by side in one process (torch and ORT on the same thread count), batch 1, at ``--size`` (256):
- speed: frames/s (1 / mean latency) and p50/p99 latency for the teacher in eager PyTorch and in ONNX Runtime,
  the student in eager PyTorch and in ONNX Runtime fp32 and int8 (static, calibrated), plus the student
  architectures (small ResNet, mobile U-Net, histogram- and depth-affine-anchored mobile U-Net) in ORT, the measured reason for the
  student's design. Calls are
  interleaved (one frame per variant in turn), so load from other processes hits all variants alike, and the
  ratios (ORT / eager for the same network) are the robust result;
- quality (with ``--data`` and trained ``--teacher`` / ``--student`` runs; ``deploy.quality``): GT PSNR / SSIM
  (inside the field of view) against the simulator ground truth and downstream Dice (the frozen target-domain
  segmenter ``--segmenter``, e.g. the demo's ``runs/demo/models/segmenter``, with its ground-truth upper bound)
  of every variant on the test split: untranslated frames, teacher eager / ORT (and the mean of
  ``--teacher-samples`` samples for a stochastic teacher), student eager / ORT fp32 / ORT int8, a student-sized
  network trained without a teacher (``--baseline``, e.g. `train cyclegan -c configs/cpu/cyclegan.yaml
  model.arch=mobile_unet`) and any other run (``--also LABEL=RUN``, repeatable; RUN ``depth_affine`` or
  ``histogram_match``: that anchor alone, fitted on the training split). With the dataset's manifest, every row
  also gets 95% patient bootstrap intervals, and the student its paired differences to the teacher and the
  baseline (same frames); ``--json`` keeps the per-frame scores (``bench/student_seeds.py`` pools seeds).
Without runs, networks are randomly initialised (the paper-size teacher, ngf 64 / 9 blocks; the student of
configs/cpu/student.yaml with its anchor, its head random rather than zero, anchored on the calibration frames):
speed does not depend on the weights. ``--skip-speed`` measures quality only.

    python bench/realtime.py --threads 2 --frames 40
    python bench/realtime.py --teacher runs/teacher --student runs/student --baseline runs/cg_small --data runs/data \
        --segmenter runs/demo/models/segmenter --skip-speed
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from sonoshift.deploy.export import graph_bytes, translator_metadata, with_metadata
from sonoshift.deploy.graphs import translator_graph
from sonoshift.deploy.quantize import quantize_bytes
from sonoshift.deploy.runtime import OnnxTranslator
from sonoshift.errors import exit_on_error
from sonoshift.methods import load_translator
from sonoshift.methods.cyclegan import CycleGANTranslator
from sonoshift.methods.student import StudentModel, StudentTranslator, build_student
from sonoshift.models import ResnetGenerator, init_normal


def onnx_of(translator: Any, size: int, threads: int, int8_frames: np.ndarray | None = None) -> OnnxTranslator:
    """The translator exported (traced at ``size``) and loaded in ORT; int8 static when frames are given."""
    module, spec = translator_graph(translator)
    data = with_metadata(graph_bytes(module, spec, (size, size)), translator_metadata(translator, {}, spec, "bench"))
    if int8_frames is not None:
        data = quantize_bytes(data, "static", int8_frames)
    return OnnxTranslator(data, threads=threads)


def random_translator(net: torch.nn.Module, size: int, student: bool = False) -> Any:
    init_normal(net, torch.Generator().manual_seed(0), 0.02)  # anchored nets keep a random head: full cost
    cls = StudentTranslator if student else CycleGANTranslator
    return cls(net, (size, size), "handheld", "cart")


def time_variants(variants: dict[str, Any], size: int, frames: int, seed: int = 0,
                  block: int = 10) -> dict[str, dict[str, float]]:
    """Batch-1 calls interleaved in blocks: each variant runs ``block`` frames in turn (the first one untimed), so
    load from other processes hits all variants alike while one ORT session's worker threads, which spin for a
    while after each run, do not steal the cores from the next variant's timed calls (with one-frame interleaving
    the later sessions measured up to 2x slower than the same network alone). Returns per variant frames/s
    (1 / mean latency), p50 and p99 latency (ms)."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(1, 1, size, size, generator=g) * 2 - 1 for _ in range(frames)]
    with torch.inference_mode():
        for fn in variants.values():  # warm-up: first-call allocations, ORT's graph preparation
            for _ in range(2):
                fn(xs[0])
        lat: dict[str, list[float]] = {k: [] for k in variants}
        for start in range(0, frames, block):
            chunk = xs[start : start + block]
            for name, fn in variants.items():
                fn(chunk[0])  # untimed: the previous variant's threads settle
                for x in chunk:
                    t = time.perf_counter()
                    fn(x)
                    lat[name].append(time.perf_counter() - t)
    return {k: {"fps": 1.0 / statistics.mean(v), "p50_ms": 1e3 * float(np.percentile(v, 50)),
                "p99_ms": 1e3 * float(np.percentile(v, 99)), "n": len(v)} for k, v in lat.items()}


def quality_table(args: argparse.Namespace, teacher: Any, student: Any, cal: np.ndarray) -> dict[str, Any]:
    """GT PSNR / SSIM / downstream Dice of every variant on ``args.split`` (printed as a Markdown table)."""
    from sonoshift.deploy.quality import SplitReference, split_quality
    from sonoshift.inference.sampling import MeanOfSamples

    ref = SplitReference.load(args.data, args.split, teacher.source_domain, teacher.target_domain, args.segmenter,
                              stride=args.stride)
    qv: dict[str, Any] = {"untranslated": Untranslated(teacher), "teacher eager": teacher}
    if not args.no_ort:
        qv["teacher ORT"] = onnx_of(teacher, teacher.image_size[0], args.threads)
    if getattr(teacher, "stochastic", False) and args.teacher_samples > 1:
        qv[f"teacher eager, mean of {args.teacher_samples}"] = MeanOfSamples(teacher, args.teacher_samples)
    qv["student eager"] = student
    if not args.no_ort:
        qv["student ORT fp32"] = onnx_of(student, student.image_size[0], args.threads)
    if not args.no_int8:
        qv["student ORT int8"] = onnx_of(student, student.image_size[0], args.threads, cal)
    if args.baseline:
        qv["no-teacher baseline eager"] = load_translator(args.baseline, device="cpu")
    for item in args.also:
        label, _, run = item.partition("=")
        if run in ("histogram_match", "depth_affine"):  # a no-learning baseline (an anchor alone), fitted on train
            from sonoshift.baselines import make_baseline

            qv[label] = make_baseline(run, args.data, teacher.source_domain, teacher.target_domain, "")[0]
        else:
            qv[label] = load_translator(run, device="cpu")
    dice = ref.segmenter is not None
    print(f"\n| quality on {args.data} {args.split}, {len(ref.frames)} frames (stride {args.stride}; vs simulator GT, "
          "inside the FOV) | GT PSNR dB | GT SSIM |" + (" Dice |" if dice else ""))
    print("|---|---|---|" + ("---|" if dice else ""), flush=True)

    def row(k: str, v: dict[str, float]) -> None:
        print(f"| {k} | {v['gt_psnr']:.2f} | {v['gt_ssim']:.4f} |" + (f" {v['dice']:.4f} |" if dice else ""),
              flush=True)

    per_frame: dict[str, dict[str, np.ndarray]] = {}
    q = split_quality(qv, ref, on_row=row, per_frame=per_frame)
    if ref.patients is not None:
        intervals(per_frame, ref.patients, "no-teacher baseline eager" in q)
        q["per_frame"] = {k: {m: [float(x) for x in a] for m, a in v.items()} for k, v in per_frame.items()}
        q["patients"] = [str(p) for p in ref.patients]
    t, st = q["teacher eager"], q["student eager"]
    print(f"\nstudent vs teacher: {st['gt_psnr'] - t['gt_psnr']:+.2f} dB GT PSNR (target: within 0.5 dB)"
          + (f", Dice {st['dice'] - t['dice']:+.4f} (target: within 0.02)" if dice else ""))
    if "no-teacher baseline eager" in q:
        b = q["no-teacher baseline eager"]
        print(f"student vs no-teacher baseline: {st['gt_psnr'] - b['gt_psnr']:+.2f} dB"
              + (f", Dice {st['dice'] - b['dice']:+.4f}" if dice else ""))
    if "student ORT int8" in q:
        i8, f32 = q["student ORT int8"], q.get("student ORT fp32", st)
        print(f"int8 cost: {i8['gt_psnr'] - f32['gt_psnr']:+.2f} dB"
              + (f", Dice {i8['dice'] - f32['dice']:+.4f}" if dice else ""))
    return q


def intervals(per_frame: dict[str, dict[str, np.ndarray]], patients: np.ndarray, baseline: bool) -> None:
    """Print each row's means with 95% patient bootstrap intervals, and the paired differences (same frames) of
    the student against the teacher and the no-teacher baseline, and of every other row against the teacher."""
    from sonoshift.metrics.bootstrap import patient_bootstrap

    metrics = [m for m in ("gt_psnr", "gt_ssim", "dice") if m in per_frame["student eager"]]
    n = len(set(patients))
    print(f"\n| 95% patient bootstrap intervals ({n} patients, 2000 resamples) | "
          + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics))
    for name, v in per_frame.items():
        if not name.startswith("ground truth"):
            print(f"| {name} | " + " | ".join(str(patient_bootstrap(v[m], patients)) for m in metrics) + " |")
    pairs = [("student eager", "teacher eager")] + ([("student eager", "no-teacher baseline eager")] if baseline
                                                      else [])
    pairs += [(k, "teacher eager") for k in per_frame if k not in ("teacher eager", "student eager", "untranslated")
              and not k.startswith(("ground truth", "teacher", "student"))]
    print("\n| paired difference, same frames (95% patient bootstrap) | " + " | ".join(metrics) + " |\n|---|"
          + "---|" * len(metrics))
    for a, b in pairs:
        print(f"| {a} - {b} | " + " | ".join(
            str(patient_bootstrap(per_frame[a][m] - per_frame[b][m], patients)) for m in metrics) + " |")


def anchor_of(frames: np.ndarray, size: int, kind: str = "histogram_match") -> Any:
    """The anchor ``kind`` fitted on uint8 ``frames`` (N, H, W) (a random anchored student's anchor; speed only):
    a histogram map to the frames' histogram, or a depth-wise affine map between them and themselves (the
    identity map, at the cost of the real one), None for "none"."""
    from sonoshift.baselines.histogram_match import HistogramMatch, reference_from_frames

    if kind == "none":
        return None
    if kind == "depth_affine":
        from sonoshift.methods.anchor import fit_affine

        return fit_affine((frames, frames > 0), (frames, frames > 0), depth=True)

    levels, quantiles = reference_from_frames(frames)
    return HistogramMatch(levels, quantiles, "handheld", "cart", (size, size))


class Untranslated:
    method, image_size, source_domain, target_domain = "untranslated", (0, 0), "", ""

    def __init__(self, like: Any) -> None:
        self.source_domain, self.target_domain = like.source_domain, like.target_domain
        self.image_size = like.image_size

    def __call__(self, x: torch.Tensor, generator: Any = None) -> torch.Tensor:
        return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=40, help="timed frames per variant (after a warm-up)")
    ap.add_argument("--teacher", default=None, help="trained teacher run (default: random paper-size CycleGAN G)")
    ap.add_argument("--student", default=None, help="trained student run (default: random configs/cpu/student.yaml)")
    ap.add_argument("--baseline", default=None, help="student-sized network trained without a teacher (quality)")
    ap.add_argument("--data", default=None, help="prepared dataset with ground truth: quality + int8 calibration")
    ap.add_argument("--segmenter", default=None, help="frozen target-domain segmenter: downstream Dice (quality)")
    ap.add_argument("--teacher-samples", type=int, default=4, help="stochastic teacher: also the mean of K samples")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=RUN", help="another run in the quality table")
    ap.add_argument("--split", default="test", help="split scored for quality")
    ap.add_argument("--stride", type=int, default=1, help="quality on every N-th frame of the split")
    ap.add_argument("--no-int8", action="store_true", help="quality: leave out the int8 student")
    ap.add_argument("--no-ort", action="store_true", help="quality: leave out the ORT rows (equal to eager within "
                    "1e-3, tested)")
    ap.add_argument("--skip-speed", action="store_true", help="quality only (no timing)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    size = args.size

    teacher = (load_translator(args.teacher, device="cpu") if args.teacher
               else random_translator(ResnetGenerator(ngf=64, n_blocks=9), size))
    cal = None
    if args.data:
        from sonoshift.data.cache import load_cache

        cal = np.asarray(load_cache(args.data, "train", teacher.source_domain))[:32]
    else:
        cal = (torch.rand(8, 64, 64, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8).numpy()
    from sonoshift.config import load_config
    from sonoshift.methods.student import StudentConfig

    default = load_config(StudentConfig, "cpu/student", []).model  # the shipped student
    hm = anchor_of(cal, size)
    student = (load_translator(args.student, device="cpu") if args.student
               else random_translator(build_student(default, anchor_of(cal, size, default.anchor)), size,
                                      student=True))
    results: dict[str, Any] = {"threads": args.threads, "size": size, "batch": 1, "loadavg_start": load_start,
                               "teacher": args.teacher or "random ngf64/9",
                               "student": args.student or "random default student"}
    if not args.skip_speed:
        mobile = random_translator(build_student(StudentModel(arch="mobile_unet")), size, student=True)
        anchored = random_translator(build_student(StudentModel(anchor="histogram_match"), hm), size, student=True)
        affine = random_translator(build_student(StudentModel(anchor="depth_affine"), anchor_of(cal, size,
                                   "depth_affine")), size, student=True)
        resnet = random_translator(build_student(StudentModel(arch="resnet")), size, student=True)
        onnx = {
            "teacher ORT": onnx_of(teacher, size, args.threads),
            "student ORT fp32": onnx_of(student, size, args.threads),
            "student ORT int8": onnx_of(student, size, args.threads, cal),
        }
        speed_variants = {
            "teacher eager": teacher, "teacher ORT": onnx["teacher ORT"],
            "student eager": student, "student ORT fp32": onnx["student ORT fp32"],
            "student ORT int8": onnx["student ORT int8"],
            "arch resnet16x4 ORT": onnx_of(resnet, size, args.threads),
            "arch mobile_unet16x4 ORT": onnx_of(mobile, size, args.threads),
            "arch anchored mobile_unet16x4 ORT": onnx_of(anchored, size, args.threads),
            "arch depth-affine anchored mobile_unet16x4 ORT": onnx_of(affine, size, args.threads),
        }
        speed = time_variants(speed_variants, size, args.frames)
        results["speed"] = speed
        print(f"\nthreads {args.threads}, {size}x{size}, batch 1; load average at start {load_start[0]:.1f}, "
              f"at end {os.getloadavg()[0]:.1f} (2 cores: numbers above ~2 mean other processes share them)")
        print("| variant | frames/s | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for k, v in speed.items():
            print(f"| {k} | {v['fps']:.1f} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} |")
        ratios = {
            "teacher ORT / eager": speed["teacher ORT"]["fps"] / speed["teacher eager"]["fps"],
            "student ORT / eager": speed["student ORT fp32"]["fps"] / speed["student eager"]["fps"],
            "student int8 / fp32 (ORT)": speed["student ORT int8"]["fps"] / speed["student ORT fp32"]["fps"],
            "student ORT / teacher eager": speed["student ORT fp32"]["fps"] / speed["teacher eager"]["fps"],
            "mobile_unet / resnet student arch (ORT)": (speed["arch mobile_unet16x4 ORT"]["fps"]
                                                        / speed["arch resnet16x4 ORT"]["fps"]),
            "anchored / plain mobile_unet (ORT)": (speed["arch anchored mobile_unet16x4 ORT"]["fps"]
                                                   / speed["arch mobile_unet16x4 ORT"]["fps"]),
            "depth-affine anchored / plain mobile_unet (ORT)": (
                speed["arch depth-affine anchored mobile_unet16x4 ORT"]["fps"] / speed["arch mobile_unet16x4 ORT"]["fps"]),
        }
        results["ratios"] = ratios
        print("\n| ratio (same process, interleaved) | value |\n|---|---|")
        for k, v in ratios.items():
            print(f"| {k} | {v:.2f}x |")

    if args.data and args.teacher and args.student:
        results["quality"] = quality_table(args, teacher, student, cal)
    if not args.skip_speed:
        s = speed["student ORT fp32"]
        print(f"\ntargets: student ORT {s['fps']:.1f} frames/s (>= 30), p99 {s['p99_ms']:.1f} ms (<= 40); "
              f"ORT/eager teacher {ratios['teacher ORT / eager']:.2f}x, student {ratios['student ORT / eager']:.2f}x "
              "(>= 1.5x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    exit_on_error(main)
