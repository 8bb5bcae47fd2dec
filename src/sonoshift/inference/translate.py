"""Frames through a translator: the same field-of-view crop and resize as `prepare`, batched inference, and the
way back (to the cropped size, or pasted into the original frame geometry).

The translator comes from ``sonoshift.methods.load_translator`` and is used through the ``Translator`` Protocol
(``sonoshift.methods.kinds``); this module never looks inside a method.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sonoshift.config import from_dict
from sonoshift.data.crop import CropConfig, CropResult, apply_crop, find_fov
from sonoshift.data.resize import ResizeConfig, placement, resize_stack
from sonoshift.engine.stamp import prepare_of
from sonoshift.errors import SonoshiftError
from sonoshift.inference.sampling import MeanOfSamples, uncertainty_to_uint8
from sonoshift.methods.kinds import Translator, TranslatorBase
from sonoshift.progress import make_progress


@dataclass(frozen=True)
class Geometry:
    """How frames reach the model: field-of-view crop, then the prepared square resize (as in `prepare`)."""

    crop: CropConfig = field(default_factory=CropConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)


def geometry_from_checkpoint(state: dict[str, Any], model_size: int, *, path: Any = "the model") -> Geometry:
    """The crop/resize of the dataset a checkpoint was trained on: the engine's stamp (``metadata.prepare``),
    or for a checkpoint written before the stamp the dataset.json it names. A checkpoint with neither is refused
    with one sentence naming the sonoshift version that wrote it."""
    prep = prepare_of(state.get("metadata") or {})
    if prep is None:
        version = state.get("sonoshift_version", "unknown")
        raise SonoshiftError(
            f"checkpoint {path} was written by sonoshift {version}, which did not record its training crop and size, "
            f"and its dataset is gone; retrain it, or harmonize a prepared split (--dataset) or whole frames (--no-crop)."
        )
    crop = from_dict(CropConfig, prep.get("crop") or {})
    resize = from_dict(ResizeConfig, prep.get("resize") or {"size": model_size})
    return Geometry(crop, resize)


def to_signed(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W) -> float32 (N, 1, H, W) in [-1, 1]."""
    return torch.from_numpy(np.array(frames, dtype=np.float32)).div_(127.5).sub_(1.0).unsqueeze(1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N, 1, H, W) in [-1, 1] -> uint8 (N, H, W) (rounded, clipped)."""
    return ((x[:, 0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def resize_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking) of (N, 1, H, W) to ``size``; identity when equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def run_translator(
    translator: Translator,
    images: torch.Tensor,
    *,
    batch_size: int = 8,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
    progress: bool = False,
    description: str = "harmonize",
) -> torch.Tensor:
    """Translate (N, 1, H, W) images in [-1, 1] (H, W = any size; resized to the model size and back) in
    batches of ``batch_size`` on ``device`` (default: CPU). Returns (N, 1, H, W) in [-1, 1] on the CPU."""
    device = device or torch.device("cpu")
    size = tuple(images.shape[-2:])
    model_size = tuple(translator.image_size)
    outs = []
    bar = make_progress(transient=True) if progress else None
    with torch.inference_mode(), (bar if bar is not None else contextlib.nullcontext()):
        task = bar.add_task(description, total=len(images), info="") if bar is not None else None
        for i in range(0, len(images), batch_size):
            x = resize_batch(images[i : i + batch_size].to(device), model_size)
            y = translator(x, generator=generator) if generator is not None else translator(x)
            outs.append(resize_batch(y.float(), size).clamp(-1, 1).cpu())
            if bar is not None:
                bar.advance(task, len(x))
    return torch.cat(outs) if outs else images.new_zeros((0, 1) + size)


@dataclass(frozen=True)
class Untranslated(TranslatorBase):
    """The no-translation baseline as a translator: returns its input, so a run of it scores the raw source
    frames in every reference mode (the row a harmonizer has to beat)."""

    source_domain: str
    target_domain: str
    image_size: tuple[int, int]
    method: str = "untranslated"

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x


@dataclass
class Harmonized:
    """Result for one stack: ``frames`` uint8 (T, h, w) at the cropped size (or (T, H, W) pasted back),
    ``prepared`` uint8 (T, S, S) in the prepared geometry, the crop used, and ``uncertainty``: with K > 1
    samples, the per-pixel std of the K samples as uint8 grey levels (``uncertainty_to_uint8``) in exactly the
    geometry of ``frames`` (0 outside the field of view, also when pasted back); None for K = 1."""

    frames: np.ndarray
    prepared: np.ndarray
    crop: CropResult
    uncertainty: np.ndarray | None = None


def prepared_fov(crop: CropResult, resize: ResizeConfig) -> np.ndarray:
    """The field of view of ``crop`` in the prepared square: bool (S, S) (nearest-neighbour resize of the mask,
    as `prepare` resizes masks)."""
    return resize_stack(crop.mask.astype(np.uint8) * 255, resize, nearest=True) > 0


def from_prepared(
    prepared: np.ndarray, crop: CropResult, resize: ResizeConfig, *, paste_back: bool = False,
    background: np.ndarray | None = None,
) -> np.ndarray:
    """Map uint8 images (T, S, S) in the prepared geometry back to the frame geometry (frames and uncertainty
    maps alike).

    Pixels outside the prepared field of view are treated as 0; the placed region is resized to the cropped
    size (h, w) = ``crop.mask.shape`` (INTER_LINEAR, INTER_AREA when shrinking) and pixels outside ``crop.mask``
    are 0. Returns uint8 (T, h, w), or with ``paste_back`` (T, H, W) = ``crop.full_mask.shape``: a copy of
    ``background`` (uint8 (T, H, W); zeros when None) with the field of view replaced by the mapped images.
    """
    h, w = crop.mask.shape
    p = placement(h, w, resize)
    fov = prepared_fov(crop, resize)[p.y : p.y + p.nh, p.x : p.x + p.nw]
    inner = np.where(fov, prepared[:, p.y : p.y + p.nh, p.x : p.x + p.nw], 0).astype(np.uint8)
    interp = cv2.INTER_LINEAR if (h >= p.nh and w >= p.nw) else cv2.INTER_AREA
    if len(inner):
        back = np.stack([cv2.resize(f, (w, h), interpolation=interp) for f in inner])
    else:
        back = np.zeros((0, h, w), np.uint8)
    back[:, ~crop.mask] = 0
    if not paste_back:
        return back
    full_shape = (len(back),) + crop.full_mask.shape
    if background is not None and background.shape != full_shape:
        raise ValueError(f"background {background.shape} does not match the frames {full_shape}")
    full = np.zeros(full_shape, np.uint8) if background is None else background.copy()
    y0, y1, x0, x1 = crop.bbox
    region = full[:, y0:y1, x0:x1]
    region[:, crop.mask] = back[:, crop.mask]
    return full


def harmonize_stack(
    frames: np.ndarray,
    translator: Translator,
    geometry: Geometry,
    *,
    paste_back: bool = False,
    batch_size: int = 8,
    device: torch.device | None = None,
    progress: bool = False,
    name: str | None = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
) -> Harmonized:
    """Harmonize uint8 frames (T, H, W): crop the field of view (as `prepare`), resize to the prepared square
    (and the model size), translate, and map back to the cropped size; ``paste_back`` puts the result inside
    the field of view of the original frames (pixels outside it keep their original values).

    ``samples`` K > 1 (stochastic translators, ``translator.stochastic``): each frame is the mean of K samples and
    ``uncertainty`` holds their per-pixel std (grey levels), mapped back through :func:`from_prepared` like the
    frames but with 0 outside the field of view. A deterministic translator with K > 1 raises SonoshiftError.
    ``generator``: passed to the translator for every batch (None: the translator's own default seed).
    """
    hook = None
    if samples != 1:
        hook = translator = MeanOfSamples(translator, samples)
    crop = find_fov(frames, config=geometry.crop, name=name, hint="pass --no-crop (crop=False) to feed whole frames")
    cropped = apply_crop(frames, crop)
    fov = prepared_fov(crop, geometry.resize)
    prepared_in = resize_stack(cropped, geometry.resize)
    prepared_in[:, ~fov] = 0
    y = run_translator(translator, to_signed(prepared_in), batch_size=batch_size, device=device, progress=progress,
                       generator=generator, description=name or "harmonize")
    prepared = to_uint8(y)
    prepared[:, ~fov] = 0
    out = from_prepared(prepared, crop, geometry.resize, paste_back=paste_back,
                        background=frames if paste_back else None)
    uncertainty = None
    if hook is not None:
        std = torch.cat(hook.std_maps) if hook.std_maps else torch.zeros((0, 1) + tuple(translator.image_size))
        std_prepared = uncertainty_to_uint8(resize_batch(std, tuple(prepared.shape[-2:])))
        uncertainty = from_prepared(std_prepared, crop, geometry.resize, paste_back=paste_back)
    return Harmonized(out, prepared, crop, uncertainty)
