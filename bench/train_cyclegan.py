"""CycleGAN training speed: our step against a plain textbook step, side by side in one process.

Both steps train the same networks (same architecture, same initial weights, same Adam settings, same batch):
- textbook: reference layers (nn.InstanceNorm2d, NCHW tensors), six generator passes and six discriminator
  passes called one by one, MSELoss/L1Loss modules against materialised target tensors, discriminator weights
  receiving gradients during the generator update, ``zero_grad(set_to_none=False)``;
- ours: ``sonoshift.methods.cyclegan.CycleGAN.train_step`` through the engine's StepContext: instance norm via
  the group-norm kernel, no discriminator weight gradients in the generator phase, each generator once on
  [input; identity input] and each discriminator once on [real; fake], target-free losses, ``set_to_none``
  (and torch.compile with --compile). NCHW: channels_last is slower for every layer of these networks on an
  AVX2 CPU (measured per layer), so the CPU configs leave it off.
Steps alternate (ours, textbook, ours, ...) so that load from other processes hits both alike; the ratio of
medians is the result. Every round prints the 1-minute load average: on a shared machine the absolute numbers
mean little, the ratio more. Also: inference frames/s at 256x256 for ngf 64 / 9 blocks and ngf 16 / 6 blocks.

    python bench/train_cyclegan.py --threads 2 --steps 3
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time

import torch
from torch import nn

from sonoshift.config import load_config
from sonoshift.engine.loop import StepContext
from sonoshift.errors import exit_on_error
from sonoshift.methods.cyclegan import CycleGAN, CycleGANConfig, build_generator
from sonoshift.models import InstanceNorm
from sonoshift.objectives import ImagePool


def plain_copy(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with reference nn.InstanceNorm2d layers and NCHW weights (same parameters)."""
    net = copy.deepcopy(net).to(memory_format=torch.contiguous_format)

    def swap(m: nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, InstanceNorm):
                setattr(m, name, nn.InstanceNorm2d(child.num_features, affine=False, track_running_stats=False))
            else:
                swap(child)

    swap(net)
    return net


class Textbook:
    """The plain CycleGAN step, as a tutorial writes it."""

    def __init__(self, method: CycleGAN, lr: float = 2e-4) -> None:
        self.G_ab, self.G_ba, self.D_a, self.D_b = (plain_copy(method.modules[k]) for k in ("G_ab", "G_ba", "D_a", "D_b"))
        self.opt_G = torch.optim.Adam(list(self.G_ab.parameters()) + list(self.G_ba.parameters()), lr, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(list(self.D_a.parameters()) + list(self.D_b.parameters()), lr, betas=(0.5, 0.999))
        self.pool_a = ImagePool(50, torch.Generator().manual_seed(1))
        self.pool_b = ImagePool(50, torch.Generator().manual_seed(2))
        self.mse, self.l1 = nn.MSELoss(), nn.L1Loss()

    def step(self, a: torch.Tensor, b: torch.Tensor) -> float:
        self.opt_G.zero_grad(set_to_none=False)
        fake_b = self.G_ab(a)
        rec_a = self.G_ba(fake_b)
        fake_a = self.G_ba(b)
        rec_b = self.G_ab(fake_a)
        idt_a = self.G_ab(b)
        idt_b = self.G_ba(a)
        p_fb, p_fa = self.D_b(fake_b), self.D_a(fake_a)
        loss_g = (self.mse(p_fb, torch.ones_like(p_fb)) + self.mse(p_fa, torch.ones_like(p_fa))
                  + 10 * (self.l1(rec_a, a) + self.l1(rec_b, b)) + 5 * (self.l1(idt_a, b) + self.l1(idt_b, a)))
        loss_g.backward()
        self.opt_G.step()
        self.opt_D.zero_grad(set_to_none=False)
        loss_d = 0.0
        for D, real, fake, pool in ((self.D_b, b, fake_b, self.pool_b), (self.D_a, a, fake_a, self.pool_a)):
            fake = pool.query(fake.detach())
            pr, pf = D(real), D(fake.detach())
            loss = 0.5 * (self.mse(pr, torch.ones_like(pr)) + self.mse(pf, torch.zeros_like(pf)))
            loss.backward()
            loss_d = loss_d + loss.item()
        self.opt_D.step()
        return loss_g.item() + loss_d


def our_method(size: int, ngf: int, blocks: int, compile_: bool) -> tuple[CycleGAN, StepContext]:
    cfg = load_config(CycleGANConfig, None, [f"model.ngf={ngf}", f"model.n_blocks={blocks}", f"model.ndf={ngf}",
                                             "train.channels_last=false", f"train.compile={str(compile_).lower()}"])
    method = CycleGAN(cfg, torch.device("cpu"), (size, size))
    ctx = StepContext(device=torch.device("cpu"), autocast_dtype=None, accum_steps=1, rank=0, world_size=1, seed=0,
                      channels_last=False, grad_clip=0.0, optimizers=method.optimizers, scaler=None)
    return method, ctx


def bench_train(size: int, batch: int, steps: int, ngf: int, blocks: int, compile_: bool) -> dict:
    torch.manual_seed(0)
    method, ctx = our_method(size, ngf, blocks, compile_)
    plain = Textbook(method)
    a = torch.rand(batch, 1, size, size) * 2 - 1
    b = torch.rand(batch, 1, size, size) * 2 - 1
    batch_ours = ctx.to_device({"source": a, "target": b})
    t_ours, t_plain = [], []
    for i in range(steps + 1):  # the first round is a warm-up
        s = time.perf_counter()
        method.train_step(batch_ours, ctx)
        d1 = time.perf_counter() - s
        s = time.perf_counter()
        plain.step(a, b)
        d2 = time.perf_counter() - s
        if i > 0:
            t_ours.append(d1)
            t_plain.append(d2)
        print(f"  {size}x{size} b{batch} round {i}: ours {d1:.2f}s textbook {d2:.2f}s "
              f"(1-min load average {os.getloadavg()[0]:.2f})", flush=True)
    ours, base = batch / statistics.median(t_ours), batch / statistics.median(t_plain)
    return {"size": size, "batch": batch, "ngf": ngf, "blocks": blocks, "ours_img_s": ours, "textbook_img_s": base,
            "speedup": ours / base, "steps": steps}


@torch.inference_mode()
def bench_infer(ngf: int, blocks: int, size: int, batch: int, frames: int) -> dict:
    cfg = load_config(CycleGANConfig, None, [f"model.ngf={ngf}", f"model.n_blocks={blocks}"])
    net = build_generator(cfg.model).eval()
    plain = plain_copy(net).eval()
    fast = net
    x = torch.rand(batch, 1, size, size) * 2 - 1
    xc = x
    fast(xc), plain(x)
    t_fast, t_plain = [], []
    for _ in range(max(1, frames // batch)):
        s = time.perf_counter()
        fast(xc)
        t_fast.append(time.perf_counter() - s)
        s = time.perf_counter()
        plain(x)
        t_plain.append(time.perf_counter() - s)
    return {"ngf": ngf, "blocks": blocks, "size": size, "batch": batch,
            "ours_fps": batch / statistics.median(t_fast), "plain_fps": batch / statistics.median(t_plain)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3, help="timed rounds per configuration (after one warm-up)")
    ap.add_argument("--configs", default="256x1,128x4", help="comma list of SIZExBATCH")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--compile", action="store_true", help="torch.compile our networks (needs a C++ compiler)")
    ap.add_argument("--infer-frames", type=int, default=8)
    ap.add_argument("--infer-batch", type=int, default=4)
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-infer", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    results: dict = {"threads": args.threads, "load_start": load_start, "train": [], "infer": []}
    if not args.skip_train:
        for spec in args.configs.split(","):
            size, batch = (int(v) for v in spec.lower().split("x"))
            results["train"].append(bench_train(size, batch, args.steps, args.ngf, args.blocks, args.compile))
    if not args.skip_infer:
        for ngf, blocks in ((64, 9), (16, 6)):
            results["infer"].append(bench_infer(ngf, blocks, 256, args.infer_batch, args.infer_frames))
    print(f"\nthreads: {args.threads}; 1-min load average {load_start:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end (a machine shared with other jobs slows both steps)")
    print("| training | ngf/blocks | ours img/s | textbook img/s | speedup |")
    print("|---|---|---|---|---|")
    for r in results["train"]:
        print(f"| {r['size']}x{r['size']} batch {r['batch']} | {r['ngf']}/{r['blocks']} | {r['ours_img_s']:.3f} | "
              f"{r['textbook_img_s']:.3f} | {r['speedup']:.2f}x |")
    if results["infer"]:
        print(f"\n| inference 256x256 (batch {args.infer_batch}) | ours frames/s | plain frames/s |")
        print("|---|---|---|")
        for r in results["infer"]:
            print(f"| ngf {r['ngf']} / {r['blocks']} blocks | {r['ours_fps']:.2f} | {r['plain_fps']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    exit_on_error(main)
