"""Sampling speed of the DDGAN generator: N = 4 steps against N = 250 (the literal reading of "t = 250").

Times complete sampling (``sonoshift.diffusion.sampler.sample``: N generator passes + posterior draws) of a batch
at 128x128 and 256x256 and prints frames/s side by side with the ratio. The weights do not change the speed, so
a freshly initialised generator of the chosen size is used unless --checkpoint gives a trained one.

    python bench/ddgan.py                          # compact CPU generator, CPU, batch 1
    python bench/ddgan.py --threads 1 --measure-many 25    # time 25 of the 250 steps, extrapolate (busy CPU)
    python bench/ddgan.py --size paper --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import time

import torch

from sonoshift.errors import exit_on_error
from sonoshift.models.ddgan_unet import PAPER_UNET, DDGANUNet, UNetConfig
from sonoshift.diffusion.sampler import sample
from sonoshift.diffusion import make_schedule, uniform_times


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def frames_per_second(
    G: DDGANUNet, steps: int, res: int, batch: int, device: torch.device, repeats: int, measured: int = 0
) -> float:
    """Frames per second of N-step sampling at ``res`` x ``res`` (a one-step warm-up, then ``repeats`` timed runs).

    ``measured`` in (0, steps): time only the first ``measured`` steps of the N-step chain and scale the time by
    steps / measured. Sampling is N identical generator passes plus posterior draws, so its cost is linear in N;
    this keeps the 250-step case affordable on a busy CPU. 0 times the whole chain.
    """
    s = make_schedule(uniform_times(steps))
    if 0 < measured < steps:  # the top ``measured`` levels of the same chain (where sampling starts)
        s = type(s)(*(v[steps - measured :] for v in (s.times, s.betas, s.alphas, s.alpha_bars)))
    scale = steps / s.num_steps
    g = torch.Generator(device=device).manual_seed(0)
    cond = torch.rand(batch, 1, res, res, generator=g, device=device) * 2 - 1
    sample(G, make_schedule(uniform_times(1)), cond, g)  # warm-up (allocations, kernels): one generator pass
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        sample(G, s, cond, g)
    _sync(device)
    return batch * repeats / ((time.perf_counter() - start) * scale)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=["cpu", "paper"], default="cpu", help="generator variant (configs/cpu or paper)")
    p.add_argument("--checkpoint", default=None, help="a trained ddgan/cascade checkpoint instead of random weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    p.add_argument("--steps", type=int, nargs=2, default=[4, 250], metavar=("FEW", "MANY"))
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the few-step sampler (1 for the many)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--measure-many", type=int, default=0, metavar="M",
                   help="time only M of the MANY steps and extrapolate linearly (0 = time all of them)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = PAPER_UNET if args.size == "paper" else UNetConfig(attn_resolutions=(16,))

    few, many = args.steps
    threads = torch.get_num_threads()
    print(f"DDGAN sampling, generator={args.size}, device={device}, batch={args.batch}, threads={threads}")
    print(f"{'resolution':>10} | {f'N={few} frames/s':>16} | {f'N={many} frames/s':>17} | {'ratio':>7}")
    for res in args.resolutions:
        if args.checkpoint:
            from sonoshift.methods import load_translator

            G = load_translator(args.checkpoint).G
        else:
            torch.manual_seed(0)
            G = DDGANUNet(cfg, image_size=res)
        G = G.to(device).eval()
        fps_few = frames_per_second(G, few, res, args.batch, device, args.repeats)
        fps_many = frames_per_second(G, many, res, args.batch, device, 1, args.measure_many)
        print(f"{res:>10} | {fps_few:>16.3f} | {fps_many:>17.4f} | {fps_few / fps_many:>6.1f}x", flush=True)
    if 0 < args.measure_many < many:
        print(f"(N={many} extrapolated from {args.measure_many} timed steps: the cost is linear in N)")


if __name__ == "__main__":
    exit_on_error(main)
