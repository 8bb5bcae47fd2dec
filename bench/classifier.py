"""Why the plane classifier is a compact CNN: parameters and CPU speed of PlaneNet against MONAI's DenseNet121
and ResNet18 (2D, one input channel), in one process on the same batch.

    python bench/classifier.py [--size 96] [--batch 16] [--threads 2] [--reps 3]

Prints parameters, training-step and inference time per image for each network and the ratio to PlaneNet, and the
inference cost of PlaneNet as the test-time zoom ensemble (judges/plane/zoom.py, zooms 1 / 1.25 / 1.5). On a
shared machine wall times measure the other jobs too: read the ratios.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn.functional as F

from sonoshift.errors import exit_on_error
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS, zoom_ensemble


def _nets(num_classes: int) -> dict[str, torch.nn.Module]:
    from monai.networks.nets import DenseNet121, ResNet

    return {
        "PlaneNet (sonoshift)": PlaneNet(num_classes, NetConfig()),
        "MONAI ResNet18": ResNet("basic", [2, 2, 2, 2], [64, 128, 256, 512], spatial_dims=2, n_input_channels=1,
                                 num_classes=num_classes),
        "MONAI DenseNet121": DenseNet121(spatial_dims=2, in_channels=1, out_channels=num_classes),
    }


def _time(fn, reps: int) -> float:
    fn()
    t = time.process_time()
    for _ in range(reps):
        fn()
    return (time.process_time() - t) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 1, a.size, a.size, generator=g)
    y = torch.randint(0, 4, (a.batch,), generator=g)
    rows = []
    for name, net in _nets(4).items():
        opt = torch.optim.AdamW(net.parameters())

        def step(net=net, opt=opt):
            net.train()
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        def infer(net=net):
            net.eval()
            with torch.inference_mode():
                net(x)

        params = sum(p.numel() for p in net.parameters())
        rows.append((name, params, _time(step, a.reps) / a.batch, _time(infer, a.reps) / a.batch))
    base = rows[0]
    print(f"{a.size}x{a.size}, batch {a.batch}, {a.threads} threads; CPU seconds per image; load average "
          f"{os.getloadavg()[0]:.2f} (ratios from a loaded machine are not results)")
    for name, params, tr, inf in rows:
        print(f"{name:22s} {params / 1e6:6.2f} M params  train {tr * 1e3:7.2f} ms ({tr / base[2]:5.1f}x)  "
              f"infer {inf * 1e3:6.2f} ms ({inf / base[3]:5.1f}x)")
    ens = zoom_ensemble(PlaneNet(4, NetConfig()), DEFAULT_ZOOMS)

    def infer_ens():
        with torch.inference_mode():
            ens(x)

    inf = _time(infer_ens, a.reps) / a.batch
    print(f"{'PlaneNet zoom ensemble':22s} ({len(DEFAULT_ZOOMS)} zooms, inference only)  "
          f"infer {inf * 1e3:6.2f} ms ({inf / base[3]:5.1f}x)")


if __name__ == "__main__":
    exit_on_error(main)
