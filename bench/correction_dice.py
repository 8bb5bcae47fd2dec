"""Why a trained anchored translator's correction costs downstream Dice (issue 12): the frozen target segmenter on
the anchor alone, the translator, the anchor plus a scaled correction (anchor + lambda x (translator - anchor)), and
each with a light Gaussian blur (a despeckle), with GT PSNR / SSIM, Dice (95% patient bootstrap) and the number of
frames per class where the segmenter predicts a class the label map does not have (a spurious class scores 0 in
that frame's mean Dice).

    python bench/correction_dice.py --data runs/demo/data --models runs/demo/models --split val \
        [--translator ddgan] [--lambdas 0.25,0.5,0.75] [--blur 0.5] [--output-gains 0,1,2,4]

Select on --split val; report on test. Set OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from ablate_ddgan import no_learning_anchor, test_frames, translate  # noqa: E402

from sonoshift.errors import exit_on_error  # noqa: E402


def evaluate(name: str, out: np.ndarray, t: dict[str, np.ndarray], seg, labels: np.ndarray) -> dict[str, object]:
    from sonoshift.downstream.segmenter import predict
    from sonoshift.metrics import pair_metrics
    from sonoshift.metrics.bootstrap import patient_bootstrap
    from sonoshift.metrics.segmentation import dice_per_class

    dice, spurious = [], np.zeros(seg.num_classes, dtype=int)
    for j, p in enumerate(predict(seg, list(out), 32)):
        p = np.where(t["mask"][j], p, 0).astype(np.uint8)
        d = dice_per_class(p, labels[j], seg.num_classes)
        dice.append(np.nanmean(d) if np.isfinite(d).any() else np.nan)
        spurious += [(c > 0) and (p == c).any() and not (labels[j] == c).any() for c in range(seg.num_classes)]
    iv = patient_bootstrap(np.array(dice), t["patient"], seed=0)
    a = torch.from_numpy(out.astype(np.float32) / 255)[:, None]
    b = torch.from_numpy(t["gt"].astype(np.float32) / 255)[:, None]
    v = pair_metrics(a, b, torch.from_numpy(t["mask"])[:, None])
    row = {"row": name, "psnr": float(v["psnr"].mean()), "ssim": float(v["ssim"].mean()), "dice": iv.mean,
           "dice_ci": f"[{iv.low:.3f}, {iv.high:.3f}]", "spurious": spurious[1:].tolist()}
    print(f"{name:<34} PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.3f}  Dice {iv.mean:.3f} {row['dice_ci']}  "
          f"spurious-class frames per class {row['spurious']}", flush=True)
    return row


def blur(x: np.ndarray, mask: np.ndarray, sigma: float) -> np.ndarray:
    out = np.stack([gaussian_filter(f.astype(np.float64), sigma) for f in x])
    return (np.clip(np.round(out), 0, 255) * mask).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    ap.add_argument("--models", type=Path, default=Path("runs/demo/models"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--translator", default="ddgan")
    ap.add_argument("--lambdas", default="0.25,0.5,0.75")
    ap.add_argument("--blur", type=float, default=0.5)
    ap.add_argument("--output-gains", default="", help="also score the translator with these output_gain values (px)")
    ap.add_argument("--frames", type=int, default=1000, help="frames per patient (every patient is kept)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sonoshift.downstream.evaluate_seg import label_lut
    from sonoshift.downstream.segmenter import load_segmenter
    from sonoshift.methods import load_translator

    tr = load_translator(args.models / args.translator)
    t = test_frames(args.data, tr.source_domain, tr.target_domain, args.frames, args.split)
    seg = load_segmenter(args.models / "segmenter")
    labels = label_lut(seg)[t["label"]]
    print(f"{args.split}: {len(t['x'])} frames of {len(np.unique(t['patient']))} patients", flush=True)
    evaluate("raw", t["x"], t, seg, labels)
    evaluate("ground truth", t["gt"], t, seg, labels)
    anchor = translate(no_learning_anchor(args.data, args.models / "cyclegan", "depth_affine"), t["x"])
    out = translate(tr, t["x"])
    fg = anchor > 0
    for lam in [0.0, *(float(v) for v in args.lambdas.split(",") if v), 1.0]:
        mix = np.where(fg, np.clip(np.round(anchor + lam * (out.astype(float) - anchor)), 0, 255), 0).astype(np.uint8)
        evaluate(f"anchor + {lam:g} x correction", mix, t, seg, labels)
        if lam in (0.0, 1.0) and args.blur > 0:
            evaluate(f"anchor + {lam:g} x correction, blur {args.blur:g}", blur(mix, t["mask"], args.blur), t, seg,
                     labels)
    for g in (float(v) for v in args.output_gains.split(",") if v):
        tr.output_gain = g  # the sample re-applied to the anchor as a local gain (methods.anchor.apply_as_gain)
        evaluate(f"{args.translator}, output_gain {g:g}", translate(tr, t["x"]), t, seg, labels)
    c = (out.astype(float) - anchor)[fg]
    print(f"correction inside the fan: mean {c.mean():+.2f} grey levels, mean |c| {np.abs(c).mean():.2f}")


if __name__ == "__main__":
    exit_on_error(main)
