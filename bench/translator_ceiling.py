"""The paired ceiling of the Dice gap (issue 12): how much of the Dice that the scanner gap costs can a translator
recover at all from the source frames?

The simulator renders every source frame's scene again in the target scanner (the ground truth), so a translator can
be trained *with* pairs: source frame -> its ground-truth target frame, L1 inside the field of view. The unpaired
translators never see a pair; a paired one with the same anchor and a larger network is what the same information
allows when the correspondence is given. Its share of the Dice gap, (Dice - raw) / (ground truth - raw) with the
frozen target-domain segmenter, estimates what the source frames allow (not a strict bound: another loss or network
could do better): if it falls short of a target, the target likely asks for information the frames do not carry.

    python bench/translator_ceiling.py --data runs/demo/data --models runs/demo/models --out OUT \
        [--steps N] [--frames 40] [--split test] [--only paired_mobile,...]

Rows: untranslated, the depth-affine anchor alone, the demo's trained translators found under ``--models``
(cyclegan, ddgan, cascade), the paired translators (``PAIRED``: one 7x7 linear filter after the anchor, the
anchored mobile U-Net of the student, and a wider MONAI BasicUNet body; and, as a contrast, the mobile U-Net
trained on synthetic pairs that the CycleGAN makes from target frames alone), and the ground truth itself. Each
row: GT PSNR, SSIM, spectrum distance, Dice with a 95% patient-bootstrap interval, and the share of the Dice gap
with a patient-bootstrap interval of the ratio. The paired
networks train on the train split's pairs (horizontal flips), keep the checkpoint with the lowest validation L1
(every 500 steps; no Dice is looked at), and are kept under OUT/<row>/model.pt. Writes OUT/ceiling.md and .csv and
OUT/ceiling.png (four test frames of different patients through every row, and each row's |output - truth|).
Set OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "src"))
sys.path.insert(0, str(ROOT))

from ablate_ddgan import dice, no_learning_anchor, score, test_frames, translate  # noqa: E402

from sonoshift.errors import SonoshiftError, exit_on_error  # noqa: E402


def _mobile(anchor):
    from sonoshift.models.anchored import anchored_mobile_unet

    return anchored_mobile_unet(anchor, 32, 4).zero_head()


def _basic_unet(anchor):
    from monai.networks.nets import BasicUNet

    from sonoshift.models.anchored import AnchoredGenerator

    body = BasicUNet(spatial_dims=2, in_channels=2, out_channels=1, features=(32, 64, 128, 256, 256, 32))
    body.head = body.final_conv  # the linear 1x1 output conv: zeroed, so the net starts as its anchor
    return AnchoredGenerator(anchor, body).zero_head()


class _LinearAfter(torch.nn.Module):
    """anchor -> one KxK linear filter with a bias inside the field of view (the anchor's non-black pixels); starts
    as the identity (a centred delta), so an untrained filter returns the anchor."""

    def __init__(self, anchor, k: int = 7) -> None:
        super().__init__()
        self.anchor = anchor
        self.conv = torch.nn.Conv2d(1, 1, k, padding=k // 2)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, k // 2, k // 2] = 1.0
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            a = self.anchor(x)
        return torch.where(a > -1, self.conv(a), a).clamp(-1.0, 1.0)


PAIRED = {  # row -> (network builder on the fitted anchor, what it is, training steps unless --steps says)
    "paired_linear": (_LinearAfter, "paired L1, one 7x7 linear filter after the anchor (the best linear correction)",
                      3000),
    "paired_mobile": (_mobile, "paired L1, anchored mobile U-Net (width 32, the student's body)", 3000),
    "paired_unet": (_basic_unet, "paired L1, anchored MONAI BasicUNet (32..256)", 1000),
    "cyclegan_pairs_mobile": (_mobile, "the mobile U-Net on synthetic pairs (CycleGAN target -> source, target): no "
                                       "real pair, the kind of condition the unpaired refiners train on", 1000),
}


def cyclegan_pairs(data: Path, split: str, target: str, cyclegan: Path) -> tuple[torch.Tensor, ...]:
    """(G_{T->S}(target frame), target frame, target field of view) of ``split``: pairs made without any source
    frame, from the trained CycleGAN's target -> source generator (a domain without masks: its non-black pixels)."""
    from sonoshift.data.cache import load_cache, load_fov
    from sonoshift.methods.ddgan import load_cyclegan

    g_ts = load_cyclegan(cyclegan, torch.device("cpu")).G_ba
    y = torch.from_numpy(load_cache(data, split, target).astype(np.float32))[:, None] / 127.5 - 1
    m = torch.from_numpy(np.asarray(load_fov(data, split, target)) > 0).float()[:, None]
    with torch.no_grad():
        x = torch.cat([g_ts(y[i:i + 64]).clamp(-1, 1) for i in range(0, len(y), 64)])
    return x, y, m


def pairs(data: Path, split: str, source: str, target: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source frames, ground-truth target frames, field-of-view masks) of ``split`` as (N, 1, H, W) tensors in [-1, 1]."""
    from sonoshift.data.cache import cache_path, has_cache, load_cache

    kinds = [None, f"gt_{target}", "mask"]
    for k in kinds:
        if not has_cache(data, split, source, k):
            raise SonoshiftError(f"{cache_path(data, split, source, k)} is missing: the paired ceiling needs a "
                                 "simulated dataset with ground truth.")
    x, y, m = (torch.from_numpy(load_cache(data, split, source, k).astype(np.float32))[:, None] for k in kinds)
    return x / 127.5 - 1, y / 127.5 - 1, (m > 0).float()


def masked_l1(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return ((a - b).abs() * m).sum() / m.sum().clamp_min(1.0)


def train_paired(net: torch.nn.Module, train: tuple, val: tuple, steps: int, seed: int) -> tuple[torch.nn.Module, list]:
    """L1 on the pairs (batch 32, Adam 1e-3 with cosine decay, horizontal flips); the weights of the checkpoint with
    the lowest validation L1 (every 500 steps) and the (step, val L1) history."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    x, y, m = train
    best, history = (float("inf"), None), []
    for step in range(1, steps + 1):
        net.train()
        idx = torch.randint(0, len(x), (32,), generator=g)
        flip = torch.rand(32, generator=g) < 0.5
        xb, yb, mb = (torch.where(flip[:, None, None, None], t[idx].flip(-1), t[idx]) for t in (x, y, m))
        loss = masked_l1(net(xb), yb, mb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0 or step == steps:
            net.eval()
            with torch.no_grad():
                v = float(sum(masked_l1(net(val[0][i:i + 64]), val[1][i:i + 64], val[2][i:i + 64]) * len(val[0][i:i + 64])
                              for i in range(0, len(val[0]), 64)) / len(val[0]))
            history.append((step, v))
            print(f"  step {step}: train L1 {float(loss.detach()):.4f}, val L1 {v:.4f}", flush=True)
            if v < best[0]:
                best = (v, {k: t.clone() for k, t in net.state_dict().items()})
    net.load_state_dict(best[1])
    return net.eval(), history


class _Net:
    """A plain network as the bench's translator: ``tr(x, generator=...)`` on [-1, 1] frames."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.net(x)


def share_interval(d: np.ndarray, raw: np.ndarray, gt: np.ndarray, patients: np.ndarray) -> tuple[float, float, float]:
    """(Dice - raw) / (GT - raw) of the frame means, and its 95% patient-bootstrap percentile interval."""
    from sonoshift.metrics.bootstrap import patient_bootstrap_ratio

    iv = patient_bootstrap_ratio(d - raw, gt - raw, patients)
    return iv.mean, iv.low, iv.high


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    ap.add_argument("--models", type=Path, default=Path("runs/demo/models"))
    ap.add_argument("--out", type=Path, default=Path("runs/ceiling"))
    ap.add_argument("--steps", type=int, default=0, help="training steps of every paired row (default: each row's own)")
    ap.add_argument("--frames", type=int, default=40, help="test frames per patient (every patient is kept)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="", help="comma-separated paired rows (default all)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    from sonoshift.downstream.segmenter import load_segmenter
    from sonoshift.inference.translate import Untranslated
    from sonoshift.methods import load_translator

    for need in ("cyclegan", "segmenter"):
        if not (args.models / need).is_dir():
            raise SonoshiftError(f"{args.models / need} is missing: pass --models of a finished `sonoshift demo`.")
    cg = load_translator(args.models / "cyclegan")
    src, tgt = cg.source_domain, cg.target_domain
    t = test_frames(args.data, src, tgt, args.frames, args.split)
    seg = load_segmenter(args.models / "segmenter")
    raw, gt = dice(seg, t["x"], t), dice(seg, t["gt"], t)
    print(f"{args.split}: {len(t['x'])} frames, {len(np.unique(t['patient']))} patients; Dice raw "
          f"{raw.mean():.3f}, ground truth {gt.mean():.3f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    shown = {}

    def add(name: str, desc: str, out: np.ndarray, seconds: float = 0.0) -> None:
        shown[name] = out
        row = score(name, desc, out, t, seconds, seg)
        row["share"], lo, hi = share_interval(dice(seg, out, t), raw, gt, t["patient"])
        row["share_ci"] = f"[{lo:.3f}, {hi:.3f}]"
        rows.append(row)
        print(f"{name:<16} PSNR {row['psnr']:.2f}  SSIM {row['ssim']:.3f}  spec {row['spectrum_db']:.2f}  "
              f"Dice {row['dice']:.3f} {row['dice_ci']}  share {row['share']:.3f} {row['share_ci']}", flush=True)
        write(rows, args)

    add("untranslated", "raw source frames", translate(Untranslated(src, tgt, cg.image_size), t["x"]))
    anchor = no_learning_anchor(args.data, args.models / "cyclegan", "depth_affine")
    add("depth_affine", "the depth-affine anchor alone (no learning)", translate(anchor, t["x"]))
    for name in ("cyclegan", "ddgan", "cascade"):
        if (args.models / name).is_dir():
            add(name, f"the demo's {name} (unpaired)", translate(load_translator(args.models / name), t["x"]))
    real = pairs(args.data, "train", src, tgt), pairs(args.data, "val", src, tgt)
    for name in [n for n in args.only.split(",") if n] or list(PAIRED):
        if name not in PAIRED:
            raise SonoshiftError(f"unknown paired row {name!r}; the rows are {', '.join(PAIRED)}.")
        build, desc, steps = PAIRED[name]
        steps = args.steps or steps
        train, val = real if not name.startswith("cyclegan_") else (
            cyclegan_pairs(args.data, "train", tgt, args.models / "cyclegan"),
            cyclegan_pairs(args.data, "val", tgt, args.models / "cyclegan"))
        path = args.out / name / "model.pt"
        net = build(anchor)
        t0 = time.perf_counter()
        if path.is_file():
            net.load_state_dict(torch.load(path))
        else:
            print(f"{name}: training {steps} steps on {len(train[0])} pairs", flush=True)
            net, _ = train_paired(net, train, val, steps, args.seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(net.state_dict(), path)
        add(name, desc, translate(_Net(net.eval()), t["x"]), time.perf_counter() - t0)
    add("ground_truth", "the simulator's target rendering of each source frame", t["gt"])
    figure(shown, t, args.out / "ceiling.png")


def figure(shown: dict[str, np.ndarray], t: dict[str, np.ndarray], path: Path, n: int = 4) -> None:
    """Rows: ``n`` frames of different patients; columns: every row's output, then its |output - truth|."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    middle = [np.flatnonzero(t["patient"] == p) for p in np.unique(t["patient"])]
    first = [int(idx[len(idx) // 2]) for idx in middle]  # each patient's middle frame
    pick = [first[i] for i in np.linspace(0, len(first) - 1, min(n, len(first))).round().astype(int)]
    names = list(shown)
    err = [k for k in names if k not in ("untranslated", "ground_truth")]
    cols = len(names) + len(err)
    fig, ax = plt.subplots(len(pick), cols, figsize=(1.6 * cols, 1.7 * len(pick)), squeeze=False)
    for r, i in enumerate(pick):
        truth = t["gt"][i].astype(np.float32)
        panels = [(k, shown[k][i], "gray", 255) for k in names]
        panels += [(f"|{k} - truth|", np.abs(shown[k][i].astype(np.float32) - truth) * t["mask"][i], "magma", 64)
                   for k in err]
        for c, (title, img, cmap, vmax) in enumerate(panels):
            ax[r, c].imshow(img, cmap=cmap, vmin=0, vmax=vmax)
            ax[r, c].set_axis_off()
            if r == 0:
                ax[r, c].set_title(title, fontsize=7)
    fig.suptitle("Paired ceiling: test frames through every row (error maps: 0-64 grey levels)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    cols = ["row", "psnr", "ssim", "lncc", "bc", "spectrum_db", "dice", "dice_ci", "share", "share_ci", "seconds", "what"]
    with open(args.out / "ceiling.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = [f"Paired ceiling, {args.split} frames vs the simulator ground truth (Dice: the frozen target-domain "
             "segmenter; share of the gap: (Dice - raw) / (ground truth - raw), 95% patient bootstrap).", "",
             "| row | GT PSNR dB | SSIM | spectrum dB | Dice | share of the Dice gap | what |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['row']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['spectrum_db']:.2f} | {r['dice']:.3f} "
              f"{r['dice_ci']} | {r['share']:.3f} {r['share_ci']} | {r['what']} |" for r in rows]
    (args.out / "ceiling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    exit_on_error(main)
