"""`sonoshift harmonize`: run a trained translator on frames, folders and cine-loops, or on a prepared split.

Two modes:
- inputs: each input (image, folder of frames, MP4/AVI, DICOM, .npy) -> ``OUT/<stem>.mp4`` at the input frame
  rate for stacks of several frames (``OUT/<stem>.png`` for a single image), plus PNG frames under
  ``OUT/<stem>/`` with ``frames=True``; with ``samples`` K > 1 the same under ``OUT/uncertainty/`` for the
  per-pixel std of the K samples (grey levels);
- dataset: the source-domain frames of one split of a prepared dataset -> a translation run folder
  (docs/formats.md §3: outputs/, outputs.csv, run.json) for `sonoshift evaluate`.
Every output is written to a temporary name and renamed, so nothing half-written remains.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

import sonoshift
from sonoshift.atomic import atomic_dir
from sonoshift.data.cache import has_cache, load_cache
from sonoshift.data.manifests import read_manifest, read_pairs
from sonoshift.data.readers import read_stack
from sonoshift.data.resize import ResizeConfig
from sonoshift.deploy.runtime import load_runtime_translator
from sonoshift.errors import SonoshiftError
from sonoshift.inference.sampling import MeanOfSamples, uncertainty_to_uint8
from sonoshift.inference.translate import (
    Geometry,
    geometry_from_checkpoint,
    harmonize_stack,
    resize_batch,
    run_translator,
    to_signed,
    to_uint8,
)
from sonoshift.io.images import read_gray, write_png
from sonoshift.io.video import write_mp4
from sonoshift.outputs import Batch, Stamp, all_or_nothing, claim_entries, claim_folder, record_entries, settings_key
from sonoshift.outputs import write_stamp
from sonoshift.progress import track
from sonoshift.runs import dataset_reference

DEFAULT_FPS = 25.0
HARMONIZED = "harmonized output"
RUN = "translation run"
OUTPUT_COLUMNS = ["output_path", "source_path", "target_path", "gt_path", "mask_path", "label_path", "patient_id",
                  "video_id", "frame_index"]


def translation_geometry(translator: Any, ckpt: Any, crop: bool) -> Geometry:
    from dataclasses import replace

    trained_geometry = geometry_from_checkpoint
    if not crop:  # whole frames: the trained resize when the checkpoint knows it, else the model size
        try:
            geo = trained_geometry(ckpt.state, int(translator.image_size[0]), path=ckpt.path)
        except SonoshiftError:
            geo = Geometry(resize=ResizeConfig(size=int(translator.image_size[0])))
        return Geometry(replace(geo.crop, method="none"), geo.resize)
    return trained_geometry(ckpt.state, int(translator.image_size[0]), path=ckpt.path)


def harmonize_inputs(
    model: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    *,
    frames: bool = False,
    paste_back: bool = False,
    batch_size: int = 8,
    device: str | None = None,
    crop: bool = True,
    progress: bool = True,
    samples: int = 1,
    force: bool = False,
    runtime: str = "torch",
    **translator_options: Any,
) -> list[Path]:
    """Harmonize each input with the model at ``model`` into folder ``out``; returns the written paths.

    ``runtime`` "torch" (a checkpoint) or "onnx" (an exported .onnx file, or a checkpoint exported in memory; ONNX
    Runtime on the CPU). Videos keep their frame rate (25 fps when the input has none); ``paste_back`` writes full-size frames with
    the harmonized field of view pasted in; ``crop=False`` feeds whole frames. ``device`` None = auto.
    ``samples`` K > 1 (stochastic models): each output is the mean of K samples, and the per-pixel std of the K
    samples, in grey levels of the 0..255 output (0 outside the field of view), is written in the same geometry
    and format to ``out/uncertainty/<stem>.png|.mp4`` (+ ``out/uncertainty/<stem>/`` PNG frames with ``frames``).

    Output policy (sonoshift.outputs): ``out`` may hold other files; an output name that exists is refused
    unless it is an earlier result of harmonize (then it is reused when model, input and settings are the same,
    or replaced with ``force``). All inputs succeed or nothing is written.
    """
    from sonoshift.engine.device import select_device

    if not inputs:
        raise SonoshiftError("harmonize needs at least one input (or --dataset).")
    dev = select_device(device or "auto")
    translator, ckpt = load_runtime_translator(model, runtime, dev, **translator_options)
    if samples != 1:
        MeanOfSamples(translator, samples)  # a deterministic model (or K < 1) stops here, before any input is read
    geo = translation_geometry(translator, ckpt, crop)
    out = Path(out)
    stems = [Path(p).stem if Path(p).suffix else Path(p).name for p in inputs]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise SonoshiftError(f"inputs share the output name '{min(dup)}'; harmonize them into separate folders.")
    if samples > 1 and frames and "uncertainty" in stems:
        raise SonoshiftError("an input named 'uncertainty' would overwrite the uncertainty/ folder of --samples; "
                             "rename it or harmonize it into another folder.")
    settings = {"model": model_identity(model), "crop": crop, "paste_back": paste_back, "samples": samples,
                "options": translator_options, "runtime": runtime}
    keys = {stem: settings_key({**settings, "input": input_identity(p)}) for p, stem in zip(inputs, stems)}
    # Every name an input may produce (.png for a single image, .mp4 for a stack) is checked before any work.
    for stem in stems:
        claim_entries(out, {rel: keys[stem] for rel in _output_names(stem, None, frames, samples > 1)},
                      HARMONIZED, force=force)
    existed = out.exists()
    written: list[Path] = []
    ledger: dict[str, str] = {}
    try:
        with all_or_nothing() as batch:
            for path, stem in zip(inputs, stems):
                stack = read_stack(path)
                single = len(stack.frames) == 1 and stack.fps is None
                names = _output_names(stem, single, frames, samples > 1)
                actions = claim_entries(out, {rel: keys[stem] for rel in names}, HARMONIZED, force=force)
                written += [out / rel for rel in names]
                if all(a == "reuse" for a in actions.values()):
                    continue  # this input's earlier result, with the same model and settings, is kept
                res = harmonize_stack(stack.frames, translator, geo, paste_back=paste_back, batch_size=batch_size,
                                      device=dev, progress=progress, name=str(path), samples=samples)
                fps = stack.fps or DEFAULT_FPS
                _write_outputs(batch, out, stem, res.frames, single, fps, frames)
                if res.uncertainty is not None:
                    _write_outputs(batch, out / "uncertainty", stem, res.uncertainty, single, fps, frames)
                ledger.update({rel: keys[stem] for rel in names})
            batch.after_commit(lambda: record_entries(out, ledger, HARMONIZED) if ledger else None)
    except BaseException:
        if not existed:  # leave the output as it was: no empty folders either
            for d in (out / "uncertainty", out):
                with contextlib.suppress(OSError):
                    d.rmdir()
        raise
    return written


def _output_names(stem: str, single: bool | None, frames: bool, uncertainty: bool) -> list[str]:
    """Output paths (relative to OUT) of one input; ``single`` None: both the image and the video name."""
    files = [f"{stem}.png", f"{stem}.mp4"] if single is None else [f"{stem}.png" if single else f"{stem}.mp4"]
    names = files + ([stem] if frames else [])
    return names + ([f"uncertainty/{n}" for n in names] if uncertainty else [])


def model_identity(model: Any) -> Any:
    """What identifies a model in an output's settings key: its checkpoint file (path, size, time), or the
    translator object's description (e.g. the untranslated baseline)."""
    from sonoshift.engine.checkpoint import MODEL_FILE, find_checkpoint

    if not isinstance(model, (str, Path)):
        return [type(model).__name__, repr(model)]
    found = Path(model) if Path(model).suffix == ".onnx" and Path(model).is_file() else find_checkpoint(model)
    f = found if found.is_file() else found / MODEL_FILE
    st = f.stat()
    return [str(f.resolve()), st.st_size, st.st_mtime_ns]


def input_identity(path: str | Path) -> Any:
    """An input file or folder of frames as it goes into a settings key (path, sizes, modification times)."""
    p = Path(path)
    if p.is_dir():
        return [str(p.resolve()), [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(p.iterdir())
                                   if f.is_file()]]
    if not p.exists():
        raise SonoshiftError(f"input {p} does not exist.")
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def _write_outputs(batch: Batch, folder: Path, stem: str, images: np.ndarray, single: bool, fps: float,
                   frames: bool) -> None:
    """``folder/<stem>.png`` (``single``) or ``folder/<stem>.mp4`` at ``fps``, plus PNG frames under
    ``folder/<stem>/`` with ``frames``; written to temporaries of ``batch`` (in place when it commits)."""
    if single:
        write_png(batch.path(folder / f"{stem}.png"), images[0], atomic=False)
    else:
        write_mp4(batch.path(folder / f"{stem}.mp4"), images, fps)
    if frames:
        tmp = batch.path(folder / stem, folder=True)
        for i, fr in enumerate(images):
            write_png(tmp / f"{i:05d}.png", fr, atomic=False)


def _csv_text(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue()


def harmonize_dataset(
    model: str | Path | Any,
    dataset: str | Path,
    out: str | Path,
    *,
    split: str = "test",
    batch_size: int = 8,
    device: str | None = None,
    progress: bool = True,
    config_name: str | None = None,
    samples: int = 1,
    force: bool = False,
    allow_leakage: bool = False,
    runtime: str = "torch",
    **translator_options: Any,
) -> Path:
    """Translate the source-domain frames of ``split`` of the prepared dataset into the run folder ``out``
    (docs/formats.md §3). Each output row names its source frame, its paired target (pairs_<split>.csv), its
    ground truth (manifest column ``gt_<target>_path``), mask and label map when present. Returns ``out``.
    ``model``: a checkpoint/run folder (or an exported .onnx file with ``runtime`` "onnx"), or a translator object
    (e.g. ``Untranslated`` for the baseline).
    ``samples`` K > 1 (stochastic models): each output is the mean of K samples, and the per-pixel std (grey levels)
    is written under ``uncertainty/`` with an ``uncertainty_path`` column.
    ``out`` follows the output policy (sonoshift.outputs): the same run already there is reused, ``force``
    replaces an earlier translation run, anything else at ``out`` is refused.
    The split is checked for leakage, and a model trained on patients of ``split`` is refused unless
    ``allow_leakage`` (then run.json records it and the report marks the run in red)."""
    from sonoshift.engine.checkpoint import read_model
    from sonoshift.engine.device import select_device

    root = Path(dataset)
    manifest = root / f"manifest_{split}.csv"
    if not (root / "dataset.json").is_file() or not manifest.is_file():
        raise SonoshiftError(f"{root} is not a prepared dataset with a {split} split (no dataset.json or {manifest.name}).")
    from sonoshift.leakage import check_model_split

    state = None  # a translator object (e.g. the untranslated baseline) has no training split
    if isinstance(model, (str, Path)):  # an exported .onnx file carries its training-split records too
        from sonoshift.deploy.runtime import read_exported_state

        state = read_exported_state(model) if Path(model).suffix == ".onnx" else read_model(model).state
    leakage = check_model_split(state, root, split, allow=allow_leakage, model=f"model {model}")
    key = settings_key({"model": model_identity(model), "dataset": _dataset_identity(root), "split": split,
                        "samples": samples, "options": translator_options, "config_name": config_name,
                        "leakage": leakage, "runtime": runtime})
    if claim_folder(out, RUN, key, force=force, legacy=_legacy_run) == "reuse":
        return Path(out)
    dev = select_device(device or "auto")
    if isinstance(model, (str, Path)):
        translator, ckpt = load_runtime_translator(model, runtime, dev, **translator_options)
        checkpoint, step = str(Path(ckpt.path).resolve()), ckpt.state.get("step")
        saved_config = (ckpt.state.get("metadata") or {}).get("config_name")
    else:  # a translator object, e.g. sonoshift.inference.translate.Untranslated for the no-translation baseline
        translator, checkpoint, step, saved_config = model, None, None, None
    if samples > 1:
        translator = MeanOfSamples(translator, samples)
    src, tgt = translator.source_domain, translator.target_domain
    rows = read_manifest(manifest)
    source_rows = [r for r in rows if r["domain"] == src]
    if not source_rows:
        raise SonoshiftError(f"prepared dataset {root} has no {split} frames of the model's source domain '{src}'.")
    pairs_path = root / f"pairs_{split}.csv"
    pair_of = {}
    if pairs_path.is_file():
        pair_of = {p["source_path"]: p["target_path"] for p in read_pairs(pairs_path)
                   if p["source_domain"] == src and p["target_domain"] == tgt}
    gt_col = f"gt_{tgt}_path"

    if has_cache(root, split, src) and has_cache(root, split, src, "mask"):
        images, masks = np.asarray(load_cache(root, split, src)), np.asarray(load_cache(root, split, src, "mask")) > 0
        if len(images) != len(source_rows):
            raise SonoshiftError(f"packed cache of '{src}'/{split} in {root} does not match {manifest.name}.")
    else:
        images = np.stack([read_gray(root / r["path"]) for r in source_rows])
        masks = np.stack([read_gray(root / r["mask_path"]) > 0 if r.get("mask_path") else np.ones(images.shape[1:], bool)
                          for r in source_rows])
    y = run_translator(translator, to_signed(images), batch_size=batch_size, device=dev, progress=progress,
                       description=f"harmonize {split}")
    outputs = to_uint8(y)
    outputs[~masks] = 0
    uncertainty = None
    if samples > 1:
        uncertainty = uncertainty_to_uint8(resize_batch(torch.cat(translator.std_maps), tuple(outputs.shape[1:])))
        uncertainty[~masks] = 0

    out = Path(out)
    out_rows = []
    columns = OUTPUT_COLUMNS + (["uncertainty_path"] if uncertainty is not None else [])
    with atomic_dir(out) as tmp:
        write_stamp(tmp, RUN, key)
        for k, (r, img) in enumerate(zip(track(source_rows, "write outputs", disable=not progress), outputs)):
            rel = f"outputs/{r['patient_id']}/{r['video_id']}/{int(r['frame_index']):05d}.png"
            write_png(tmp / rel, img, atomic=False)
            if uncertainty is not None:
                write_png(tmp / ("uncertainty" + rel[len("outputs"):]), uncertainty[k], atomic=False)
            out_rows.append({
                "output_path": rel, "source_path": r["path"], "target_path": pair_of.get(r["path"], ""),
                "gt_path": r.get(gt_col, "") or "", "mask_path": r.get("mask_path", "") or "",
                "label_path": r.get("label_path", "") or "", "patient_id": r["patient_id"],
                "video_id": r["video_id"], "frame_index": r["frame_index"],
                "uncertainty_path": ("uncertainty" + rel[len("outputs"):]) if uncertainty is not None else "",
            })
        (tmp / "outputs.csv").write_text(_csv_text(out_rows, columns), encoding="utf-8")
        run = {
            "method": translator.method,
            "config": config_name or saved_config or translator.method,
            "checkpoint": checkpoint,
            "step": step,
            "source_domain": src,
            "target_domain": tgt,
            "split": split,
            "dataset": dataset_reference(root, out),
            "dataset_absolute": str(root.resolve()),
            "sonoshift_version": sonoshift.__version__,
            "samples": samples,
        }
        if leakage is not None:
            run["leakage"] = leakage
        (tmp / "run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    return out


def _dataset_identity(root: Path) -> Any:
    try:
        info = json.loads((root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    return [str(root.resolve()), info.get("fingerprint"), info.get("config")]


def _legacy_run(out: Path) -> Stamp | None:
    """A translation run folder written before stamps existed."""
    try:
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Stamp(RUN, None) if isinstance(run, dict) and "sonoshift_version" in run else None


__all__ = ["harmonize_dataset", "harmonize_inputs", "translation_geometry"]
