"""`prepare`: ingest -> field-of-view crop -> frame harmonization -> patient-wise split -> resize -> files.

The output layout is docs/formats.md section 2. Everything is written into a temporary folder next to the
output and renamed at the end, so an interrupted or failed run leaves nothing behind.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np

import sonoshift
from sonoshift.atomic import atomic_dir
from sonoshift.config import Range, Validated, to_dict
from sonoshift.data.cache import cache_path, create_cache
from sonoshift.data.crop import CropConfig, apply_crop, find_fov, save_crop_debug
from sonoshift.data.frame_select import FrameConfig, equalize_frame_counts
from sonoshift.data.manifests import PAIR_COLUMNS, build_pairs, rows_to_csv, strip_domain, write_manifest
from sonoshift.data.readers import read_stack
from sonoshift.data.resize import ResizeConfig, crop_resize_stack, placement, resize_stack
from sonoshift.data.spec import (
    DatasetSpec,
    SpecItem,
    check_numeric_labels,
    check_patients,
    is_label_name,
    resolve_inputs,
    resolve_patient_id,
)
from sonoshift.data.splits import SPLITS, SplitConfig, make_splits, read_splits, split_of, verify_split, write_splits
from sonoshift.errors import SonoshiftError
from sonoshift.io.images import write_png
from sonoshift.io.suffixes import DICOM_SUFFIXES
from sonoshift.progress import track


@dataclasses.dataclass(frozen=True)
class PrepareConfig(Validated):
    """Configuration of `prepare`.

    split / crop / frames / resize: the stage sections; patient_pattern: regex for patient ids in file names
    (group 1), overriding the spec's; source_domain / target_domain: the pair CSVs hold only this direction
    (default: every ordered pair of domains in input order); png_compression: 0-9 (speed vs size);
    crop_debug: also write one crop debug picture per item under ``crop_debug/``.
    """

    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    crop: CropConfig = dataclasses.field(default_factory=CropConfig)
    frames: FrameConfig = dataclasses.field(default_factory=FrameConfig)
    resize: ResizeConfig = dataclasses.field(default_factory=ResizeConfig)
    patient_pattern: str | None = None
    source_domain: str | None = None
    target_domain: str | None = None
    png_compression: Annotated[int, Range(0, 9)] = 1
    crop_debug: bool = False


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    """What `prepare` made: the output folder, its dataset.json content, and whether an existing identical
    dataset was reused instead of being rebuilt."""

    out: Path
    info: dict[str, Any]
    reused: bool


# ------------------------------------------------------------------------------------------ fingerprint


def _stat_entry(p: Path) -> list[Any]:
    if p.is_dir():
        return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(p.iterdir()) if f.is_file()]
    st = p.stat()
    return [st.st_size, st.st_mtime_ns]


def fingerprint(spec: DatasetSpec) -> str:
    """sha256 over every item's metadata and its files' names, sizes and modification times."""
    h = hashlib.sha256()
    for it in spec.items:
        entry = {
            "path": str(it.path),
            "stat": _stat_entry(it.path),
            "domain": it.domain,
            "patient_id": it.patient_id,
            "video_id": it.video_id,
            "labels": {k: it.labels[k] for k in sorted(it.labels)},
            "frame_labels": None if it.frame_labels is None else [str(it.frame_labels), _stat_entry(it.frame_labels)],
            "aligned": {k: [str(v), _stat_entry(v)] for k, v in sorted(it.aligned.items())},
        }
        h.update(json.dumps(entry, sort_keys=True, default=str).encode("utf-8"))
    h.update(f"{spec.patient_pattern}|paired={spec.paired}".encode("utf-8"))
    return h.hexdigest()


def _existing(out: Path, fp: str, cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset.json of an identical dataset already at ``out``; None when ``out`` is absent or empty.
    Raises when ``out`` holds something else."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise SonoshiftError(f"output {out} exists and is not a folder.")
    meta = out / "dataset.json"
    if not meta.is_file():
        if any(out.iterdir()):
            raise SonoshiftError(
                f"output folder {out} is not empty and holds no prepared dataset; choose another folder."
            )
        return None
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SonoshiftError(f"output folder {out} holds an unreadable dataset.json; choose another folder.") from None
    if info.get("fingerprint") != fp:
        raise SonoshiftError(
            f"output folder {out} already holds a different dataset (other inputs); pass --force to replace it or "
            "choose another folder."
        )
    if info.get("config") != cfg:
        raise SonoshiftError(
            f"output folder {out} already holds this dataset prepared with another configuration; "
            "pass --force to replace it or choose another folder."
        )
    for split in SPLITS:
        verify_split(out, split)  # leakage check on every read
    return info


# ---------------------------------------------------------------------------------------- per-item work


def _read_frame_labels(path: Path) -> dict[int, dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "frame_index" not in reader.fieldnames:
                raise SonoshiftError(f"frame label file {path} has no 'frame_index' column.")
            out = {}
            for row in reader:
                try:
                    index = int(row.pop("frame_index"))
                except ValueError:
                    raise SonoshiftError(f"frame label file {path} has a non-integer frame_index.") from None
                check_numeric_labels(row, f"frame label file {path} frame {index}")
                out[index] = row
            return out
    except (OSError, UnicodeDecodeError) as e:
        raise SonoshiftError(f"frame label file {path} is unreadable ({e.__class__.__name__}).") from None


def _label_map_values(stack: np.ndarray) -> np.ndarray:
    """Binary masks stored as 0/255 become class ids 0/1; other label maps are kept."""
    vals = np.unique(stack)
    if vals.size and set(vals.tolist()) <= {0, 255} and 255 in vals:
        return (stack > 0).astype(np.uint8)
    return stack


def _label_column(names: Sequence[str]) -> str | None:
    labels = sorted(n for n in names if is_label_name(n))
    if "label_map" in labels:
        return "label_map"
    return labels[0] if labels else None


@dataclasses.dataclass
class _Staged:
    index: int
    item: SpecItem
    patient_id: str
    key: str
    n_frames: int
    stage: Path
    aligned: list[str]
    frame_labels: dict[int, dict[str, str]]
    scale: float
    bbox: tuple[int, int, int, int]
    source_shape: tuple[int, int]
    fps: float | None


def _ingest(
    item: SpecItem, k: int, staging: Path, pattern: str | None, cfg: PrepareConfig, debug_dir: Path | None
) -> _Staged:
    """Read, crop and resize one item into ``staging`` (frames, mask, aligned stacks as .npy)."""
    stack = read_stack(item.path)
    pid = resolve_patient_id(item, stack.patient_id, pattern)
    frames = stack.frames
    if frames.ndim != 3 or frames.shape[0] < 1:
        raise SonoshiftError(f"input {item.path} holds no frames.")
    crop = find_fov(frames, config=cfg.crop, name=item.path)
    if debug_dir is not None:
        save_crop_debug(frames[0], crop, debug_dir / item.domain / pid / f"{item.video_id}.png")
    p = placement(crop.mask.shape[0], crop.mask.shape[1], cfg.resize)
    # one pass per frame: mask, area-resize into place, zero outside the resized mask (exact "outside is 0")
    resized, mask = crop_resize_stack(frames, crop, cfg.resize)
    outside = mask == 0
    np.save(staging / f"{k}.frames.npy", resized)
    np.save(staging / f"{k}.mask.npy", mask)
    del resized
    for name, apath in item.aligned.items():
        a = read_stack(apath).frames
        if a.shape != frames.shape:
            raise SonoshiftError(
                f"aligned stack {apath} has shape {a.shape} but its item {item.path} has {frames.shape}."
            )
        label = is_label_name(name)
        a = apply_crop(a, crop, fill=0)
        if label:
            a = _label_map_values(a)
        a = resize_stack(a, cfg.resize, nearest=label)
        a[:, outside] = 0
        np.save(staging / f"{k}.{name}.npy", a)
    fl = _read_frame_labels(item.frame_labels) if item.frame_labels is not None else {}
    return _Staged(
        index=k,
        item=item,
        patient_id=pid,
        key=f"{item.domain}/{pid}/{item.video_id}",
        n_frames=int(frames.shape[0]),
        stage=staging,
        aligned=sorted(item.aligned),
        frame_labels=fl,
        scale=float(p.scale_x),
        bbox=tuple(int(v) for v in crop.bbox),
        source_shape=(int(frames.shape[1]), int(frames.shape[2])),
        fps=stack.fps,
    )


def _precheck_patients(spec: DatasetSpec, pattern: str | None, split: SplitConfig) -> None:
    """Catch a patient in two domains, or too few patients for the split, before decoding anything.

    Only items whose patient id does not depend on the file's content count (a DICOM without a spec id may
    carry its own PatientID); the full check runs again after ingest.
    """
    domains: dict[str, set[str]] = {}
    per_domain: dict[str, set[str]] = {}
    complete = True
    for it in spec.items:
        if it.patient_id is None and it.path.suffix.lower() in DICOM_SUFFIXES:
            complete = False
            continue
        pid = resolve_patient_id(it, None, pattern)
        domains.setdefault(pid, set()).add(it.domain)
        per_domain.setdefault(it.domain, set()).add(pid)
    if not spec.paired:
        check_patients(domains, f"dataset spec {spec.source}")
    if complete and split.file is None:
        make_splits({d: sorted(p) for d, p in per_domain.items()}, split, joint=spec.paired)


def _pair_directions(domains: list[str], cfg: PrepareConfig) -> list[tuple[str, str]]:
    if cfg.source_domain is None and cfg.target_domain is None:
        return [(a, b) for i, a in enumerate(domains) for b in domains[i + 1 :]]
    for d in (cfg.source_domain, cfg.target_domain):
        if d is not None and d not in domains:
            raise SonoshiftError(f"domain {d!r} is not in the inputs (domains: {', '.join(domains)}).")
    if cfg.source_domain is None or cfg.target_domain is None or cfg.source_domain == cfg.target_domain:
        raise SonoshiftError("give both source_domain and target_domain (two different domains), or neither.")
    return [(cfg.source_domain, cfg.target_domain)]


# ------------------------------------------------------------------------------------------------ prepare


def prepare(
    inputs: Sequence[str | Path] | DatasetSpec,
    out: str | Path,
    config: PrepareConfig | None = None,
    *,
    progress: bool = True,
    force: bool = False,
) -> PrepareResult:
    """Prepare a dataset from domain folders, a spec YAML / folder with ``sonoshift_spec.yaml``, or a DatasetSpec.

    Writes ``out`` as described in docs/formats.md section 2 (frames, masks, aligned stacks, manifests, pair
    CSVs, packed cache, splits.json, dataset.json) atomically. If ``out`` already holds the same dataset (same
    input fingerprint and config) it is reused; a different one is an error, or with ``force`` it is replaced
    (a folder without a prepared dataset never is). Raises SonoshiftError on bad input.
    """
    cfg = config or PrepareConfig()
    out = Path(out).expanduser().resolve()
    spec = inputs if isinstance(inputs, DatasetSpec) else resolve_inputs(list(inputs), cfg.patient_pattern)
    pattern = cfg.patient_pattern or spec.patient_pattern
    if not 0 <= cfg.png_compression <= 9:
        raise SonoshiftError(f"png_compression must be in 0..9, got {cfg.png_compression}.")
    domains = spec.domains
    directions = _pair_directions(domains, cfg)
    for it in spec.items:
        if out == it.path or out in it.path.parents:
            raise SonoshiftError(f"output folder {out} must not contain the input {it.path}.")
    _precheck_patients(spec, pattern, cfg.split)
    fp = fingerprint(spec)
    cfg_dict = to_dict(cfg)
    try:
        old = _existing(out, fp, cfg_dict)
    except SonoshiftError:
        if not (force and (out / "dataset.json").is_file()):  # only a prepared dataset may be replaced
            raise
        old = None
    if old is not None and not force:
        return PrepareResult(out, old, reused=True)
    reused_splits = read_splits(cfg.split.file) if cfg.split.file else None

    with atomic_dir(out) as tmp:
        staging = tmp / ".staging"
        staging.mkdir()
        debug_dir = tmp / "crop_debug" if cfg.crop_debug else None
        staged: list[_Staged] = []
        for k, item in enumerate(track(spec.items, "ingest + crop + resize", disable=not progress)):
            staged.append(_ingest(item, k, staging, pattern, cfg, debug_dir))

        by_patient: dict[str, set[str]] = {}
        keys: dict[str, Path] = {}
        for s in staged:
            by_patient.setdefault(s.patient_id, set()).add(s.item.domain)
            if s.key in keys:
                raise SonoshiftError(
                    f"inputs {keys[s.key]} and {s.item.path} have the same domain/patient/video id {s.key!r}."
                )
            keys[s.key] = s.item.path
        if not spec.paired:
            check_patients(by_patient, f"dataset spec {spec.source}")

        patients = {d: sorted({s.patient_id for s in staged if s.item.domain == d}) for d in domains}
        if reused_splits is not None:
            splits = reused_splits
            for d, ids in patients.items():
                for pid in ids:
                    if split_of(splits, d, pid) is None:
                        raise SonoshiftError(
                            f"splits file {cfg.split.file} has no split for patient {pid!r} of domain {d!r}."
                        )
        else:
            splits = make_splits(patients, cfg.split, joint=spec.paired)
        write_splits(tmp / "splits.json", splits)

        rng_keys = None
        if spec.paired:  # the same sweep in every domain keeps the same frames, so pairs stay pixel-aligned
            rng_keys = {s.key: f"{s.patient_id}/{strip_domain(s.item.video_id, s.item.domain)}" for s in staged}
        selection = equalize_frame_counts({s.key: s.n_frames for s in staged}, cfg.frames, rng_keys,
                                          names={s.key: str(s.item.path) for s in staged})
        info = _write_outputs(tmp, staged, selection, splits, domains, directions, cfg, progress)
        shutil.rmtree(staging)
        info.update(
            {
                "sonoshift_version": sonoshift.__version__,
                "name": spec.name,
                "source": spec.source,
                "config": cfg_dict,
                "fingerprint": fp,
                "domains": domains,
                "paired": spec.paired,
                "pairs": [list(d) for d in directions],
            }
        )
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return PrepareResult(out, info, reused=False)


def _write_outputs(
    tmp: Path,
    staged: list[_Staged],
    selection: dict[str, np.ndarray],
    splits: dict,
    domains: list[str],
    directions: list[tuple[str, str]],
    cfg: PrepareConfig,
    progress: bool,
) -> dict[str, Any]:
    size = int(cfg.resize.size)
    order = sorted(staged, key=lambda s: (domains.index(s.item.domain), s.patient_id, s.item.video_id))
    split_of_item = {s.key: split_of(splits, s.item.domain, s.patient_id) for s in staged}
    # Packed caches, one per split/domain (+ masks, + aligned stacks that every item of that group has).
    caches: dict[tuple[str, str, str | None], np.ndarray] = {}
    for split in SPLITS:
        for d in domains:
            group = [s for s in order if s.item.domain == d and split_of_item[s.key] == split]
            n = sum(len(selection[s.key]) for s in group)
            kinds: list[str | None] = [None, "mask"]
            if group:
                kinds += sorted(set.intersection(*(set(s.aligned) for s in group)))
            for kind in kinds:
                caches[(split, d, kind)] = create_cache(cache_path(tmp, split, d, kind), n, size, size)
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in SPLITS}
    fill: dict[tuple[str, str], int] = {}
    videos: dict[str, Any] = {}
    planes: set[str] = set()
    level = int(cfg.png_compression)
    for s in track(order, "write frames", disable=not progress):
        split, d = split_of_item[s.key], s.item.domain
        sel = selection[s.key]
        frames = np.load(s.stage / f"{s.index}.frames.npy")
        mask = np.load(s.stage / f"{s.index}.mask.npy")
        aligned = {n: np.load(s.stage / f"{s.index}.{n}.npy") for n in s.aligned}
        label_col = _label_column(s.aligned)
        rel = f"{d}/{s.patient_id}/{s.item.video_id}"
        start = fill.get((split, d), 0)
        for p, j in enumerate(sel.tolist()):
            name = f"{j:05d}.png"
            row: dict[str, Any] = {
                "patient_id": s.patient_id,
                "domain": d,
                "video_id": s.item.video_id,
                "frame_index": j,
                "path": f"frames/{rel}/{name}",
                "mask_path": f"masks/{rel}/{name}",
            }
            write_png(tmp / row["path"], frames[j], level=level, atomic=False)
            write_png(tmp / row["mask_path"], mask, level=level, atomic=False)
            caches[(split, d, None)][start + p] = frames[j]
            caches[(split, d, "mask")][start + p] = mask
            for n, arr in aligned.items():
                rp = f"aligned/{n}/{rel}/{name}"
                write_png(tmp / rp, arr[j], level=level, atomic=False)
                row["label_path" if n == label_col else f"{n}_path"] = rp
                if (split, d, n) in caches:
                    caches[(split, d, n)][start + p] = arr[j]
            labels = dict(s.item.labels)
            labels.update({k: v for k, v in s.frame_labels.get(j, {}).items() if v not in (None, "")})
            if "pixel_size_mm" in labels and labels["pixel_size_mm"] not in (None, ""):
                labels["pixel_size_mm"] = float(labels["pixel_size_mm"]) / s.scale  # mm per prepared pixel
            for k, v in labels.items():
                row[k] = v
            if labels.get("plane") not in (None, ""):
                planes.add(str(labels["plane"]))
            rows[split].append(row)
        fill[(split, d)] = start + len(sel)
        videos[s.key] = {
            "source": str(s.item.path),
            "split": split,
            "frames": s.n_frames,
            "selected": len(sel),
            "fps": s.fps,
            "source_size": list(s.source_shape),
            "crop_bbox": list(s.bbox),
            "scale": s.scale,
        }
    for arr in caches.values():
        arr.flush()
    caches.clear()
    for split in SPLITS:
        write_manifest(tmp / f"manifest_{split}.csv", rows[split])
        pairs = []
        for a, b in directions:
            pairs += build_pairs(
                [r for r in rows[split] if r["domain"] == a],
                [r for r in rows[split] if r["domain"] == b],
                seed=cfg.split.seed,
            )
        (tmp / f"pairs_{split}.csv").write_text(rows_to_csv(pairs, PAIR_COLUMNS), encoding="utf-8")
    per_video = sorted({len(v) for v in selection.values()})
    return {
        "counts": {sp: {d: sum(1 for r in rows[sp] if r["domain"] == d) for d in domains} for sp in SPLITS},
        "patients": {sp: {d: len(splits.get(d, {}).get(sp, [])) for d in domains} for sp in SPLITS},
        "frames_per_video": per_video[0] if len(per_video) == 1 else per_video,
        "frame_size": [size, size],
        "planes": sorted(planes),
        "aligned": {n: ("label" if is_label_name(n) else "image") for s in staged for n in s.aligned},
        "videos": videos,
    }


def summary(info: dict[str, Any], out: Path) -> str:
    """A short human summary of a prepared dataset (counts per domain/split, frame size, where things are)."""
    lines = [f"prepared dataset {info.get('name', '')} in {out}"]
    doms = info["domains"]
    w = max(len(d) for d in doms) + 2
    lines.append("  " + "domain".ljust(w) + "".join(s.rjust(14) for s in SPLITS))
    for d in doms:
        cells = [f"{info['counts'][s][d]} fr / {info['patients'][s][d]} pt" for s in SPLITS]
        lines.append("  " + d.ljust(w) + "".join(c.rjust(14) for c in cells))
    fs = info["frame_size"]
    lines.append(f"  frame size {fs[0]}x{fs[1]}, frames per video {info['frames_per_video']}")
    lines.append(f"  manifests: {out / 'manifest_train.csv'} (and _val, _test); pairs: {out / 'pairs_train.csv'}")
    lines.append(f"  packed cache: {out / 'cache'}; splits: {out / 'splits.json'}")
    return "\n".join(lines)


