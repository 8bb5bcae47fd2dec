"""Where does a trained synthesizer fail? The share of the added noise it does NOT remove at each diffusion step,
on real held-out frames (never the test split by default), over all pixels, the black background and the rest.

    python bench/synth_denoise.py --model RUN [RUN2 ...] --real DATA [DATA2 ...] [--split val] [--n 96]

0 = perfect denoiser, 1 = removes nothing. The same frames, steps and noise draws for every model, so the runs
compare side by side (``synth/evaluation/denoising.py``). A model that cannot remove the noise of a flat black
background at small t leaves that noise in its samples.
"""

from __future__ import annotations

import argparse
import json

import torch

from sonoshift.errors import exit_on_error
from sonoshift.synth.evaluation.denoising import denoising_error
from sonoshift.synth.evaluation.evaluate import load_images
from sonoshift.synth.pipeline import load_synthesizer
from sonoshift.synth.schedulers import training_scheduler

STEPS = (5, 20, 50, 100, 200, 400, 600, 800)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", required=True, help="synth run folders or checkpoints")
    ap.add_argument("--real", nargs="+", required=True, help="prepared datasets (frames of --split are noised)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--n", type=int, default=96, help="frames (a seeded subset)")
    ap.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    for run in args.model:
        pipe = load_synthesizer(run)
        im = load_images(args.real, [args.split], pipe.size, limit=args.n)
        if pipe.autoencoder is not None:
            raise SystemExit("the latent variant denoises latents, not frames: not supported here.")
        plane = torch.tensor([pipe.vocab.plane_index(p) if p in pipe.vocab.planes else 0 for p in im.plane])
        ga = torch.tensor(im.ga, dtype=torch.float32)
        scanner = torch.zeros_like(plane)  # scanner names differ between prepared sets: unknown (null token)

        d = pipe.cfg.diffusion
        alphas = training_scheduler(d).alphas_cumprod
        rows = denoising_error(lambda x, t: pipe.unet(x, t, plane, ga, scanner), im.x, alphas, args.steps,
                               d.prediction, torch.Generator().manual_seed(0), batch_size=len(im.x))  # one batch: conditions align
        out[run] = rows
        print(f"\n{run} ({len(im.x)} {args.split} frames; share of the noise NOT removed)")
        print(f"{'t':>5} {'1-a_bar':>8} {'all':>6} {'backgr.':>7} {'rest':>6}")
        for r in rows:
            print(f"{r['t']:5d} {r['noise_var']:8.4f} {r['all']:6.3f} {r['background']:7.3f} {r['foreground']:6.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    exit_on_error(main)
