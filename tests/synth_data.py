"""Tiny prepared datasets with plane / GA / scanner labels for the synthesizer tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from sonoshift.config import load_config
from sonoshift.data.prepare import PrepareConfig, prepare


def _frames(t: int, kind: int, ga: float, seed: int, size: int = 48) -> np.ndarray:
    """uint8 (t, size, size): a bright disc (kind 0, "head") or a bright bar (kind 1, "abdomen") on speckle;
    the disc radius grows with GA, so GA is visible."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((t, size, size), np.uint8)
    for i in range(t):
        img = rng.uniform(20, 60, (size, size))
        if kind == 0:
            r = 4 + (ga - 18) * 0.5
            img[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r] = 220
        else:
            img[size // 2 - 4: size // 2 + 4, 6:-6] = 200
        out[i] = img.astype(np.uint8)
    return out


def make_prepared(root: Path, *, name: str = "toy", domains: tuple[str, ...] = ("handheld", "cart"),
                  patients: int = 6, with_ga: bool = True, with_plane: bool = True, size: int = 16) -> Path:
    """A prepared dataset (prepared size ``size``) of ``patients`` per domain, 2 frames per video, two videos
    per patient: one "head" (disc) and one "abdomen" (bar); GA 20 + 2 * patient index when ``with_ga``."""
    root.mkdir(parents=True, exist_ok=True)
    items = []
    for d, dom in enumerate(domains):
        for i in range(patients):
            for kind, plane in enumerate(("head", "abdomen")):
                stem = f"{dom}_p{i}_{plane}"
                ga = 20.0 + 2 * i
                np.save(root / f"{stem}.npy", _frames(2, kind, ga, seed=100 * d + 10 * i + kind))
                labels: dict = {}
                if with_plane:
                    labels["plane"] = plane
                if with_ga:
                    labels["ga_weeks"] = ga
                items.append({"path": f"{stem}.npy", "domain": dom, "patient_id": f"{dom}{i}", "video_id": stem,
                              "labels": labels})
    (root / "spec.yaml").write_text(yaml.safe_dump({"name": name, "items": items}))
    out = root / "prepared"
    cfg = load_config(PrepareConfig, None, [f"resize.size={size}", "crop.method=none"])
    prepare([root / "spec.yaml"], out, cfg, progress=False)
    return out


def assert_same_weights(run_a: Path, run_b: Path, step: int) -> None:
    """The two runs' checkpoints at ``step`` hold the same tensors, bit for bit (exact resume)."""
    import torch
    from safetensors.torch import load_file

    name = f"checkpoints/step_{step:08d}/model.safetensors"
    a, b = load_file(str(run_a / name)), load_file(str(run_b / name))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
