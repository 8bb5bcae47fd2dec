"""What the task-aware output gamma (``methods.output_gamma``, docs/diffusion.md §19) changes, translator by
translator: the same trained DDGAN / cascade with its stored gamma and with gamma 1 (its outputs as trained), side
by side on the demo's handheld test frames against the simulator ground truth: the frozen judge's Dice share of
the scanner gap (95% patient-bootstrap interval), GT PSNR, SSIM, LNCC, BC and the texture check (spectrum distance;
the CycleGAN's beside it, since a method must be no further from the truth's texture than the CycleGAN).

    python bench/output_gamma.py --demo runs/demo-full          # a `sonoshift demo --seeds ...` folder (seed_K/)
    python bench/output_gamma.py --demo runs/demo               # or one demo folder

The data and the frozen judge are the first folder's (the seeds share them); every folder's models/ddgan and
models/cascade are read. Writes DEMO/output_gamma.csv (atomically) and prints the rows and the mean per method.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sonoshift.atomic import atomic_file
from sonoshift.errors import SonoshiftError, exit_on_error

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablate_ddgan import dice, score, test_frames, translate  # noqa: E402
from translator_ceiling import share_interval  # noqa: E402

METHODS = ("ddgan", "cascade")
FRAMES = 80  # per test patient: all of the demo's (its table scores every test frame)


def demo_folders(demo: Path) -> list[Path]:
    """The seed folders of a `--seeds` run (seed_0, seed_1, ...) or the demo folder itself."""
    seeds = sorted((p for p in demo.glob("seed_*") if (p / "models").is_dir()), key=lambda p: int(p.name[5:]))
    found = seeds or ([demo] if (demo / "models").is_dir() else [])
    if not found:
        raise SonoshiftError(f"{demo} is not a finished `sonoshift demo` folder (no models/ and no seed_K/models/).")
    if not (found[0] / "data").is_dir() or not (found[0] / "models" / "segmenter").is_dir():
        raise SonoshiftError(f"{found[0]} has no data/ or models/segmenter/: give the folder the demo wrote.")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, required=True, help="a demo folder or a `sonoshift demo --seeds` folder")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sonoshift.downstream.segmenter import load_segmenter
    from sonoshift.methods import load_translator

    folders = demo_folders(args.demo)
    data = folders[0] / "data"
    judge = load_segmenter(folders[0] / "models" / "segmenter")
    t = test_frames(data, "handheld", "cart", FRAMES)
    raw, gt = dice(judge, t["x"], t), dice(judge, t["gt"], t)
    print(f"{len(t['x'])} test frames of {len(np.unique(t['patient']))} patients; Dice raw {np.nanmean(raw):.3f}, "
          f"ground truth {np.nanmean(gt):.3f}", flush=True)
    rows = []
    for folder in folders:
        cg = score("cyclegan", "", translate(load_translator(folder / "models" / "cyclegan"), t["x"]), t, 0.0)
        for method in METHODS:
            run = folder / "models" / method
            if not run.is_dir():
                continue
            tr = load_translator(run)
            stored = tr.output_gamma
            for gamma in sorted({1.0, stored}):
                tr.output_gamma = gamma
                out = translate(tr, t["x"])
                row = score(method, "", out, t, 0.0)
                d = dice(judge, out, t)
                ok = np.isfinite(d) & np.isfinite(raw) & np.isfinite(gt)
                share, lo, hi = share_interval(d[ok], raw[ok], gt[ok], t["patient"][ok])
                rows.append({"folder": folder.name, "method": method, "gamma": gamma, "stored": gamma == stored,
                             "share": share, "share_low": lo, "share_high": hi, "psnr": row["psnr"],
                             "ssim": row["ssim"], "lncc": row["lncc"], "bc": row["bc"],
                             "spectrum_db": row["spectrum_db"], "cyclegan_spectrum_db": cg["spectrum_db"]})
                r = rows[-1]
                print(f"{folder.name:<8} {method:<8} gamma {gamma:<4g} share {share:.3f} [{lo:.3f}, {hi:.3f}]  "
                      f"PSNR {r['psnr']:.2f}  SSIM {r['ssim']:.3f}  LNCC {r['lncc']:.3f}  BC {r['bc']:.3f}  "
                      f"spectrum {r['spectrum_db']:.2f} (CycleGAN {r['cyclegan_spectrum_db']:.2f})", flush=True)
    table = pd.DataFrame(rows)
    with atomic_file(args.demo / "output_gamma.csv") as f:
        table.to_csv(f, index=False)
    for (method, stored), g in table.groupby(["method", "stored"]):
        print(f"{method:<8} {'stored gamma' if stored else 'gamma 1':<12} mean over {len(g)} folder(s): share "
              f"{g['share'].mean():.4f}, PSNR {g['psnr'].mean():.2f}, spectrum {g['spectrum_db'].mean():.2f}")


if __name__ == "__main__":
    exit_on_error(main)
