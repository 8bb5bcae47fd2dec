"""LPIPS: weight loading in torchvision / LPIPS file formats, scoring against a direct re-computation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sonoshift.errors import SonoshiftError
from fake_runs import write_lpips_weights as _write_weights
from sonoshift.metrics.lpips import LPIPS_SCALE, LPIPS_SHIFT, load_lpips, lpips_distance

ALEX_CONVS = [(0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1)]  # (index, stride, padding)


def _alex_direct(x: torch.Tensor, y: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """The LPIPS formula written out with functional ops on the raw state dict (AlexNet)."""
    shift = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)

    def feats(img: torch.Tensor) -> list[torch.Tensor]:
        h = ((img.repeat(1, 3, 1, 1) * 2 - 1) - shift) / scale
        out = []
        for n, (idx, stride, pad) in enumerate(ALEX_CONVS):
            if n in (1, 2):
                h = F.max_pool2d(h, 3, 2)
            h = F.relu(F.conv2d(h, w[f"features.{idx}.weight"], w[f"features.{idx}.bias"], stride, pad))
            out.append(h)
        return out

    total = torch.zeros(x.shape[0])
    for n, (fa, fb) in enumerate(zip(feats(x), feats(y))):
        na = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
        nb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
        lin = w[f"lin{n}.model.1.weight"].view(1, -1, 1, 1)
        total += ((na - nb) ** 2 * lin).sum(1).mean(dim=(1, 2))
    return total


def test_alexnet_lpips_matches_direct_formula(tmp_path: Path) -> None:
    w = _write_weights(tmp_path, "alex")
    model = load_lpips("alex", weights=tmp_path)
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, 1, 64, 64, generator=g), torch.rand(3, 1, 64, 64, generator=g)
    got = lpips_distance(model, a, b, batch_size=2)
    assert torch.allclose(got.float(), _alex_direct(a, b, w), rtol=1e-4, atol=1e-6)
    assert torch.allclose(lpips_distance(model, a, a), torch.zeros(3, dtype=torch.float64))
    assert torch.allclose(got, lpips_distance(model, b, a), atol=1e-7)
    assert (got > 0).all()


def test_vgg_loads_and_scores(tmp_path: Path) -> None:
    _write_weights(tmp_path, "vgg", seed=3)
    model = load_lpips("vgg", weights=tmp_path)
    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 1, 32, 32, generator=g)
    b = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    d = lpips_distance(model, a, b)
    assert d.shape == (2,) and (d > 0).all() and torch.allclose(d, lpips_distance(model, b, a), atol=1e-7)
    assert torch.allclose(lpips_distance(model, a, a), torch.zeros(2, dtype=torch.float64))
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_hub_cache_is_searched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    w = _write_weights(tmp_path / "hub" / "checkpoints", "alex", seed=5)
    model = load_lpips("alex")
    assert torch.equal(model.backbone.features[0].weight, w["features.0.weight"])
    assert torch.equal(model.lin4.model[1].weight, w["lin4.model.1.weight"])


def test_missing_and_bad_weights_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    (tmp_path / "w").mkdir()
    with pytest.raises(SonoshiftError, match="alexnet-owt-7be5be79.pth and alex.pth") as e:
        load_lpips("alex", weights=tmp_path / "w")
    assert str(tmp_path / "w") in str(e.value) and str(tmp_path / "hub" / "checkpoints") in str(e.value)
    _write_weights(tmp_path / "w", "alex")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "w" / "alexnet-owt-7be5be79.pth")
    with pytest.raises(SonoshiftError, match="lacks"):
        load_lpips("alex", weights=tmp_path / "w")
    (tmp_path / "w" / "alexnet-owt-7be5be79.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SonoshiftError, match="cannot be read"):
        load_lpips("alex", weights=tmp_path / "w")
