"""Tiny fake prepared datasets, translation run folders (docs/formats.md §2-3) and LPIPS weight files for tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from sonoshift.metrics.lpips import LPIPS

SIZE = 32


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def make_dataset(root: Path, n: int = 4, seed: int = 0, with_gt: bool = True) -> list[dict[str, str]]:
    """Write n source/target/gt frames, FOV masks and label maps; return rows with dataset-relative paths."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    mask = ((yy - 16) ** 2 + (xx - 16) ** 2 < 14**2).astype(np.uint8) * 255
    rows = []
    for i in range(n):
        base = gaussian_filter(rng.random((SIZE, SIZE)), 1.5)
        base = (base - base.min()) / (base.max() - base.min())
        src = np.clip(base * 255 + rng.normal(0, 20, base.shape), 0, 255) * (mask > 0)
        gt = np.clip((base**0.7) * 230 + 10, 0, 255) * (mask > 0)
        tgt = np.clip(gt + rng.normal(0, 8, base.shape), 0, 255) * (mask > 0)
        labels = (((yy - 14 - i) ** 2 / 36 + (xx - 16) ** 2 / 64) < 1).astype(np.uint8)
        labels[20:24, 10:20] = 2
        rel = f"p{i}/v0/{i:05d}.png"
        paths = {"source_path": f"frames/src/{rel}", "target_path": f"frames/tgt/{rel}",
                 "gt_path": f"aligned/gt_tgt/src/{rel}" if with_gt else "", "mask_path": f"masks/src/{rel}",
                 "label_path": f"aligned/label_map/src/{rel}"}  # fmt: skip
        for key, arr in (("source_path", src), ("target_path", tgt), ("gt_path", gt), ("mask_path", mask),
                         ("label_path", labels)):  # fmt: skip
            if paths[key]:
                _png(root / paths[key], arr)
        rows.append({**paths, "patient_id": f"p{i}", "video_id": "v0", "frame_index": str(i)})
    (root / "dataset.json").write_text("{}", encoding="utf-8")
    return rows


def make_run(
    run_dir: Path, dataset: Path, rows: list[dict[str, str]], method: str, config: str, transform
) -> Path:
    """A run folder whose outputs are ``transform(source uint8, gt uint8, index)`` (uint8 arrays)."""
    out_rows = []
    for i, r in enumerate(rows):
        src = np.asarray(Image.open(dataset / r["source_path"]))
        gt = np.asarray(Image.open(dataset / (r["gt_path"] or r["target_path"])))
        rel = f"outputs/{r['patient_id']}/{r['video_id']}/{i:05d}.png"
        _png(run_dir / rel, transform(src, gt, i))
        out_rows.append({"output_path": rel, **r})
    cols = ["output_path", "source_path", "target_path", "gt_path", "mask_path", "label_path", "patient_id",
            "video_id", "frame_index"]  # fmt: skip
    with open(run_dir / "outputs.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in cols} for r in out_rows)
    run = {"method": method, "config": config, "checkpoint": "none", "source_domain": "src",
           "target_domain": "tgt", "split": "test", "dataset": str(dataset.resolve()), "sonoshift_version": "0"}
    (run_dir / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return run_dir


def write_lpips_weights(folder: Path, net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights saved like torchvision (whole model, with a classifier) and like LPIPS (heads only)."""
    g = torch.Generator().manual_seed(seed)
    model = LPIPS(net)
    state = {}
    for k, v in model.backbone.state_dict().items():
        state[k] = torch.randn(v.shape, generator=g) * (0.3 if k.endswith("weight") else 0.05)
    state["classifier.1.weight"] = torch.randn(7, 5, generator=g)  # torchvision checkpoints carry the classifier
    heads = {k: torch.rand(v.shape, generator=g) for k, v in model.head_state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    backbone_file = "alexnet-owt-7be5be79.pth" if net == "alex" else "vgg16-397923af.pth"
    torch.save(state, folder / backbone_file)
    torch.save(heads, folder / f"{net}.pth")
    return {**state, **heads}
