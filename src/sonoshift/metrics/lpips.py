"""LPIPS (learned perceptual image patch similarity) with AlexNet or VGG16 features; lower = more similar.

d(a, b) = sum_l mean_{h,w} w_l . (n_l(a) - n_l(b))^2, where n_l is the l-th backbone feature map normalized to
unit length along channels and w_l a learned non-negative 1x1 linear head. Single-channel images in [0, 1] are
repeated to 3 channels, mapped to [-1, 1], then shifted and scaled as LPIPS does for ImageNet backbones.

Weights: the torchvision ImageNet checkpoint (``alexnet-owt-7be5be79.pth`` or ``vgg16-397923af.pth``) and the
LPIPS v0.1 head file (``alex.pth`` or ``vgg.pth``, keys ``lin0.model.1.weight`` ...). ``load_lpips`` looks in the
folder it is given, then in the torch hub cache (``torch.hub.get_dir()/checkpoints``). Nothing is downloaded, and
files are read with ``torch.load(weights_only=True)`` so no code in them runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from sonoshift.errors import SonoshiftError
from sonoshift.metrics.nets.alexnet import ALEXNET_CHANNELS, ALEXNET_CHECKPOINT, AlexNetFeatures
from sonoshift.metrics.nets.vgg import VGG16_CHANNELS, VGG16_CHECKPOINT, VGG16Features

# LPIPS's ScalingLayer constants (ImageNet statistics expressed for inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)

NETS = {
    "alex": (AlexNetFeatures, ALEXNET_CHANNELS, ALEXNET_CHECKPOINT, "alex.pth"),
    "vgg": (VGG16Features, VGG16_CHANNELS, VGG16_CHECKPOINT, "vgg.pth"),
}


class LinearHead(nn.Module):
    """LPIPS head ``model = Sequential(Dropout, Conv2d(C, 1, 1, bias=False))`` (dropout is off in eval)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(p=0.5), nn.Conv2d(channels, 1, kernel_size=1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def to_lpips_input(x: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1], (B, H, W), (B, 1, H, W) or (B, 3, H, W) -> (B, 3, H, W) in LPIPS's normalized space."""
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise SonoshiftError(f"LPIPS needs (B, 1|3, H, W) images, got shape {tuple(x.shape)}.")
    x = x.float() if not x.is_floating_point() else x
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    shift = torch.tensor(LPIPS_SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * 2 - 1 - shift) / scale


def normalize_channels(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit length along the channel dimension: f / (||f||_2 + eps)."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS distance module: ``forward(a, b)`` on images in [0, 1] -> (B,) distances (>= 0, 0 when identical)."""

    def __init__(self, net: Literal["alex", "vgg"] = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise SonoshiftError(f"LPIPS backbone must be one of {sorted(NETS)}, got {net!r}.")
        cls, channels, _, _ = NETS[net]
        self.net_name = net
        self.backbone = cls()
        for i, c in enumerate(channels):
            setattr(self, f"lin{i}", LinearHead(c))
        self.n_layers = len(channels)

    def head_state_dict(self) -> dict[str, torch.Tensor]:
        """The head parameters under the LPIPS file's names (``lin0.model.1.weight`` ...)."""
        return {k: v for k, v in self.state_dict().items() if k.startswith("lin")}

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        fa = self.backbone(to_lpips_input(a))
        fb = self.backbone(to_lpips_input(b))
        total = 0
        for i, (xa, xb) in enumerate(zip(fa, fb)):
            d = (normalize_channels(xa) - normalize_channels(xb)) ** 2
            total = total + getattr(self, f"lin{i}")(d).mean(dim=(2, 3))
        return total[:, 0]


def _find(name: str, folders: list[Path]) -> Path | None:
    for folder in folders:
        if (folder / name).is_file():
            return folder / name
    return None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same clear sentence
        raise SonoshiftError(f"weight file {path} cannot be read as a torch state dict ({type(e).__name__}).") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SonoshiftError(f"weight file {path} does not hold a state dict.")
    return state


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise SonoshiftError(f"weight file {path} lacks {len(missing)} expected tensors, first '{missing[0]}'.")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise SonoshiftError(
                f"weight file {path}: tensor '{k}' has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}."
            )
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def lpips_search_folders(weights: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for weight files, in order: ``weights`` (if given), then the torch hub checkpoint cache."""
    folders = [Path(weights).expanduser()] if weights is not None else []
    return folders + [Path(torch.hub.get_dir()) / "checkpoints"]


def load_lpips(net: Literal["alex", "vgg"] = "alex", weights: str | os.PathLike | None = None) -> LPIPS:
    """An LPIPS module with loaded backbone and head weights, in eval mode, gradients off, on the CPU.

    ``weights``: a folder holding the backbone checkpoint and the head file (see the module notes); the torch hub
    cache is searched next. Raises SonoshiftError saying which files to put where when one is missing.
    """
    if net not in NETS:
        raise SonoshiftError(f"LPIPS backbone must be one of {sorted(NETS)}, got {net!r}.")
    if weights is not None and not Path(weights).expanduser().is_dir():
        raise SonoshiftError(f"LPIPS weights folder {weights} does not exist.")
    _, _, backbone_file, head_file = NETS[net]
    folders = lpips_search_folders(weights)
    found = {name: _find(name, folders) for name in (backbone_file, head_file)}
    missing = [name for name, p in found.items() if p is None]
    if missing:
        where = " or ".join(str(f) for f in folders)
        raise SonoshiftError(
            f"LPIPS-{net} needs {' and '.join(missing)} (torchvision ImageNet checkpoint {backbone_file}, LPIPS "
            f"v0.1 linear heads {head_file}): put them in {where}."
        )
    model = LPIPS(net)
    bpath, hpath = found[backbone_file], found[head_file]
    assert bpath is not None and hpath is not None
    state = _read_state(bpath)
    features = {k: v for k, v in state.items() if k.startswith("features.")}
    _load_into(model.backbone, features, bpath)
    heads = nn.ModuleDict({f"lin{i}": getattr(model, f"lin{i}") for i in range(model.n_layers)})
    hstate = _read_state(hpath)
    _load_into(heads, hstate, hpath)
    model.eval()
    model.requires_grad_(False)
    return model


@torch.no_grad()
def lpips_distance(
    model: LPIPS, a: torch.Tensor, b: torch.Tensor, batch_size: int = 16
) -> torch.Tensor:
    """LPIPS per pair for image batches in [0, 1] (run on the model's device, ``batch_size`` at a time) -> (B,)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, a.shape[0], batch_size):
        out.append(model(a[i : i + batch_size].to(device), b[i : i + batch_size].to(device)).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
