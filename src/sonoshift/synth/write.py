"""``synthesize``: a trained synthesizer -> a folder in the prepared-dataset layout (docs/formats.md §2 and §6).

Every other stage reads the output as it reads ``sonoshift prepare``'s: ``dataset.json``, ``splits.json``,
``manifest_<split>.csv`` (all three, the unused ones empty), ``frames/<domain>/<patient>/<video>/00000.png`` and
the packed cache. Each image is its own "patient" (``syn000000`` ...), its domain the conditioned scanner (or
``synthetic``). The manifest carries, besides the base columns, ``scanner``, ``pixel_size_mm``, ``seed``,
``guidance``, ``sampler``, ``steps``, ``synthetic`` (always 1), ``data_hash`` (the training data's hash) and
``model`` (checkpoint path). Image i is drawn from its own generator seeded with ``seed + i``, so it can be
remade alone. ``contact_sheet.png`` shows plane x GA (one sample per cell, seed fixed per column).
With ``init`` image files (or folders of them) every image is image-guided (SDEdit, synth/pipeline.py): image i
starts from init image i mod len(init), read in the training geometry (field-of-view crop, resized to the model's
size), noised to ``strength`` and denoised under its conditions: variations of real frames with a chosen plane, GA
or scanner. The manifest then also carries ``init_path`` and ``strength``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

import sonoshift
from sonoshift.atomic import atomic_dir
from sonoshift.data.cache import create_cache
from sonoshift.data.manifests import write_manifest
from sonoshift.data.splits import SPLITS, write_splits
from sonoshift.errors import SonoshiftError
from sonoshift.progress import make_progress
from sonoshift.seeding import make_generator
from sonoshift.synth.pipeline import SynthPipeline
from sonoshift.synth.schedulers import SAMPLERS

if TYPE_CHECKING:
    from sonoshift.data.frame_inputs import FrameRef


@dataclass(frozen=True)
class SynthesisRequest:
    """What to make. plane: a name, comma-separated names (cycled over the images), "all" (every plane the
    model knows, cycled) or "" (unknown). ga: "" (unknown), "24.5", or "lo:hi" (n values evenly spaced from lo
    to hi). scanner: a name or "" (unknown). split: the manifest the images go to. init: image files or folders
    to start from (image-guided; empty: from noise); strength: how far each start is noised (0..1)."""

    plane: str = "all"
    ga: str = ""
    n: int = 16
    scanner: str = ""
    guidance: float | None = None
    ga_guidance: float | None = None
    steps: int | None = None
    sampler: str | None = None
    seed: int = 0
    split: str = "train"
    batch_size: int = 32
    contact_sheet: bool = True
    init: tuple[str, ...] = ()
    strength: float = 0.5


def _init_images(req: SynthesisRequest, size: int, progress: bool) -> tuple[list[FrameRef], torch.Tensor | None]:
    """The start images of an image-guided request (their frames, ``data.frame_inputs.FrameRef``: image files or
    DICOM frames; (N, 1, size, size) in [-1, 1]); ([], None) without."""
    if not req.init:
        return [], None
    from sonoshift.data.frame_inputs import list_frames
    from sonoshift.judges.plane.api import read_like_training

    files = list_frames(req.init)
    frames = read_like_training(files, size, True, progress, hint="--init images are cropped to their field of view "
                                "like the training frames, so give ultrasound frames")
    return files, torch.from_numpy(frames.astype(np.float32) / 127.5 - 1.0)[:, None]


def parse_ga(text: str, n: int) -> list[float | None]:
    """GA values for ``n`` images from "" (unknown), "w" or "lo:hi" (evenly spaced, both ends included)."""
    text = (text or "").strip()
    if not text:
        return [None] * n
    try:
        if ":" in text:
            lo_s, hi_s = text.split(":", 1)
            lo, hi = float(lo_s), float(hi_s)
            if hi < lo:
                raise ValueError
            return [float(v) for v in np.linspace(lo, hi, n)] if n > 1 else [(lo + hi) / 2]
        return [float(text)] * n
    except ValueError:
        raise SonoshiftError(f"--ga must be weeks like 24 or a range lo:hi like 20:32, got {text!r}.") from None


def check_ga_range(gas: list[float | None], ga_range: tuple[float, float], text: str) -> None:
    """Refuse GA values outside the model's GA range (NaN and infinities included); None (unknown) passes."""
    lo, hi = ga_range
    if any(g is not None and not lo <= g <= hi for g in gas):
        raise SonoshiftError(f"--ga {text.strip()} lies outside the model's GA range of {lo:g}-{hi:g} weeks "
                             f"(model.ga_range).")


def check_scale(option: str, value: float | None) -> None:
    """Refuse a guidance scale that is not a finite number >= 0 (None: the model's default)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise SonoshiftError(f"{option} must be a finite number >= 0, got {value}.")


def _check_sampling(req: SynthesisRequest) -> None:
    """Refuse bad guidance scales, step count, sampler, batch size and strength before any work."""
    check_scale("--guidance", req.guidance)
    check_scale("--ga-guidance", req.ga_guidance)
    if req.steps is not None and req.steps < 1:
        raise SonoshiftError(f"--steps must be >= 1, got {req.steps}.")
    if req.sampler and req.sampler not in SAMPLERS:
        raise SonoshiftError(f"unknown sampler {req.sampler!r} (known: {', '.join(SAMPLERS)}).")
    if req.batch_size < 1:
        raise SonoshiftError(f"--batch-size must be >= 1, got {req.batch_size}.")
    if req.init and not 0.0 < req.strength <= 1.0:
        raise SonoshiftError(f"--strength must be in (0, 1], got {req.strength}.")


def parse_planes(text: str, known: tuple[str, ...], n: int) -> list[str | None]:
    """Plane per image from "all", "a,b" (cycled) or "" (unknown); unknown names raise SonoshiftError."""
    text = (text or "").strip()
    if not text:
        return [None] * n
    names = list(known) if text == "all" else [p.strip() for p in text.split(",") if p.strip()]
    for p in names:
        if p not in known:
            raise SonoshiftError(f"plane {p!r} is not one the model knows ({', '.join(known)}).")
    return [names[i % len(names)] for i in range(n)]


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def contact_sheet(pipe: SynthPipeline, planes: list[str], gas: list[float], *, scanner: str | None, seed: int,
                  guidance: float | None, steps: int | None, sampler: str | None, scale: int = 2,
                  ga_guidance: float | None = None) -> np.ndarray:
    """A BGR grid: one row per plane, one column per GA, captions on the margins; cell (r, c) uses the
    generator seeded ``seed + c`` so a column shares its noise and only the condition changes down it."""
    n_r, n_c = len(planes), len(gas)
    plane = [p for p in planes for _ in gas]
    ga = [g for _ in planes for g in gas]
    gens = [make_generator(seed + c, device=pipe.device) for _ in planes for c in range(n_c)]
    imgs = _to_uint8(pipe(plane=plane, ga=ga, n=len(plane), scanner=scanner, generator=gens, guidance=guidance,
                          steps=steps, sampler=sampler, batch_size=32, ga_guidance=ga_guidance)[:, 0])
    s = imgs.shape[-1] * scale
    left, top = 90, 24
    sheet = np.full((top + n_r * s, left + n_c * s, 3), 255, np.uint8)
    for k, img in enumerate(imgs):
        r, c = divmod(k, n_c)
        tile = cv2.resize(img, (s, s), interpolation=cv2.INTER_NEAREST)
        sheet[top + r * s: top + (r + 1) * s, left + c * s: left + (c + 1) * s] = tile[..., None]
    for c, g in enumerate(gas):
        cv2.putText(sheet, f"GA {g:.1f} w", (left + c * s + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for r, p in enumerate(planes):
        cv2.putText(sheet, p, (4, top + r * s + s // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def synthesize(pipe: SynthPipeline, out: str | Path, req: SynthesisRequest, *, progress: bool = True) -> Path:
    """Generate ``req.n`` images with ``pipe`` into the folder ``out`` (written atomically; replaces it)."""
    if req.n < 1:
        raise SonoshiftError(f"--n must be >= 1, got {req.n}.")
    if req.split not in SPLITS:
        raise SonoshiftError(f"--split must be one of {', '.join(SPLITS)}, got {req.split!r}.")
    _check_sampling(req)
    planes = parse_planes(req.plane, pipe.planes, req.n)
    gas = parse_ga(req.ga, req.n)
    check_ga_range(gas, pipe.ga_range, req.ga)
    scanner = req.scanner or None
    if scanner is not None:
        pipe.vocab.scanner_index(scanner)  # clear error before any work
    meta = pipe.metadata
    d = pipe.cfg.diffusion
    guidance = d.guidance if req.guidance is None else req.guidance
    ga_guidance = d.ga_guidance if req.ga_guidance is None else req.ga_guidance
    steps = d.steps if req.steps is None else req.steps
    sampler = req.sampler or d.sampler
    domain = scanner or "synthetic"
    pixel = (meta.get("pixel_size_mm") or {}).get(scanner or "", math.nan)
    size = pipe.size
    init_files, starts = _init_images(req, size, progress)
    out = Path(out)
    with atomic_dir(out) as tmp:
        cache = create_cache(tmp / "cache" / req.split / f"{domain}.npy", req.n, size, size)
        mask = create_cache(tmp / "cache" / req.split / f"{domain}.mask.npy", req.n, size, size)
        rows: list[dict[str, Any]] = []
        bar = make_progress() if progress else None
        with bar if bar is not None else _Null():
            task = bar.add_task("synthesize", total=req.n, info="") if bar is not None else None
            for lo in range(0, req.n, req.batch_size):
                hi = min(req.n, lo + req.batch_size)
                gens = [make_generator(req.seed + i, device=pipe.device) for i in range(lo, hi)]
                init = None if starts is None else starts[torch.arange(lo, hi) % len(starts)].to(pipe.device)
                x = pipe(plane=planes[lo:hi], ga=gas[lo:hi], n=hi - lo, scanner=scanner, generator=gens,
                         guidance=guidance, steps=steps, sampler=sampler, batch_size=hi - lo,
                         ga_guidance=ga_guidance, init=init, strength=req.strength)
                imgs = _to_uint8(x[:, 0])
                for k, img in enumerate(imgs):
                    i = lo + k
                    pid = f"syn{i:06d}"
                    rel = f"frames/{domain}/{pid}/synth/00000.png"
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    if not cv2.imwrite(str(tmp / rel), img):
                        raise SonoshiftError(f"could not write {tmp / rel}.")
                    cache[i] = img
                    mask[i] = 255
                    rows.append({
                        "patient_id": pid, "domain": domain, "video_id": "synth", "frame_index": 0, "path": rel,
                        "mask_path": "", "plane": planes[i] or "", "ga_weeks": gas[i], "label_path": "",
                        "scanner": scanner or "", "pixel_size_mm": pixel, "seed": req.seed + i,
                        "guidance": guidance, "sampler": sampler, "steps": steps, "synthetic": 1,
                        "data_hash": meta.get("data_hash", ""), "model": meta.get("checkpoint", ""),
                        **({"init_path": str(init_files[i % len(init_files)]), "strength": req.strength}
                           if init_files else {}),
                    })
                if bar is not None:
                    bar.update(task, completed=hi)
        cache.flush()
        mask.flush()
        del cache, mask
        for s in SPLITS:
            write_manifest(tmp / f"manifest_{s}.csv", rows if s == req.split else [])
        pids = [r["patient_id"] for r in rows]
        write_splits(tmp / "splits.json",
                     {domain: {s: (pids if s == req.split else []) for s in SPLITS}, "seed": req.seed})
        settings = {"plane": req.plane, "ga": req.ga, "n": req.n, "scanner": scanner, "guidance": guidance,
                    "ga_guidance": ga_guidance, "steps": steps, "sampler": sampler, "seed": req.seed, "split": req.split,
                    **({"init_images": len(init_files), "strength": req.strength} if init_files else {})}
        info = {
            "name": "synthetic", "synthetic": True, "sonoshift_version": sonoshift.__version__,
            "source": meta.get("checkpoint", ""), "domains": [domain],
            "counts": {s: {domain: (req.n if s == req.split else 0)} for s in SPLITS},
            "patients": {s: {domain: (req.n if s == req.split else 0)} for s in SPLITS},
            "frames_per_video": 1, "frame_size": [size, size],
            "planes": sorted({p for p in planes if p}), "aligned": {}, "paired": False, "pairs": [],
            "fingerprint": f"synthetic-{meta.get('data_hash', '')}-{req.seed}-{req.n}",
            "synthesis": {**settings, "model": meta.get("checkpoint", ""), "step": meta.get("step"),
                          "data_hash": meta.get("data_hash", ""), "training_datasets": meta.get("datasets", [])},
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if req.contact_sheet:
            sheet_planes = sorted({p for p in planes if p}) or list(pipe.planes)
            lo_hi = [g for g in gas if g is not None]
            sheet_gas = (list(np.linspace(min(lo_hi), max(lo_hi), 6)) if lo_hi and max(lo_hi) > min(lo_hi)
                         else (lo_hi[:1] or [24.0]) if lo_hi else [20.0, 24.0, 28.0, 32.0, 36.0])
            sheet = contact_sheet(pipe, sheet_planes, [float(g) for g in sheet_gas], scanner=scanner,
                                  seed=req.seed, guidance=guidance, steps=steps, sampler=sampler,
                                  ga_guidance=ga_guidance)
            cv2.imwrite(str(tmp / "contact_sheet.png"), sheet)
    return out


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


__all__ = ["SynthesisRequest", "check_ga_range", "check_scale", "contact_sheet", "parse_ga", "parse_planes",
           "synthesize"]
