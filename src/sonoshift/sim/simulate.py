"""``simulate``: patients x VSI sweeps x scanner profiles -> a dataset folder that ``sonoshift prepare`` accepts.

Output folder (paths relative to it):
  sonoshift_spec.yaml               dataset spec (docs/formats.md section 1): one item per (patient, sweep, profile)
  videos/<video_id>_<profile>.mp4   cine-loop with the burned-in overlay; video_id = <patient>_<sweep>
  planes/<video_id>_<profile>.csv   frame_index,plane (head / abdomen / femur / other)
  aligned/label_map/<video_id>_<profile>.npy        (T, S, S) uint8 anatomy class ids, 0 outside the fan
  aligned/gt_<q>/<video_id>_<profile>.npy           (T, S, S) uint8: profile q's chain in this video's geometry
  metadata.csv                      one row per frame: patient, profile, sweep, frame, GA, plane, paths
  labels.json                       anatomy class names by id, plane names
  simulation.json                   the configuration and the profiles used
  contact_sheet.png                 sample frames per profile with label overlays
"""

from __future__ import annotations

from typing import Annotated, Literal
import csv
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

import sonoshift
from sonoshift.atomic import atomic_dir
from sonoshift.config import PosFloat, PosInt, Range, Seed, Validated, to_dict
from sonoshift.errors import SonoshiftError
from sonoshift.progress import make_progress
from sonoshift.sim import overlay
from sonoshift.sim.contact_sheet import write_contact_sheet
from sonoshift.sim.phantom import Phantom, build_phantom
from sonoshift.sim.planes import PLANES, plane_label
from sonoshift.sim.profiles import Profile, load_profile
from sonoshift.sim.render import FrameKey, render_slice, slice_view
from sonoshift.sim.scan_convert import View, make_view
from sonoshift.sim.speckle import ScattererBank, make_bank
from sonoshift.sim.standard_planes import STANDARD_SWEEPS
from sonoshift.sim.sweeps import SWEEPS, sweep_planes
from sonoshift.sim.tissues import LABEL_NAMES
from sonoshift.io.video import write_mp4


@dataclass(frozen=True)
class SimConfig(Validated):
    """What to simulate. Profiles are built-in names or YAML paths; GA is drawn uniformly in [ga_min, ga_max]
    (``ga_spread: uniform``), or one patient per equal stratum of that range (``stratified``: patient i in the
    i-th of ``patients`` strata), so that any split of the patients covers the range. ``sweeps``: the six VSI
    sweeps and/or the targeted standard-plane sweeps ``std-head``, ``std-abdomen``, ``std-femur``."""

    patients: PosInt = 4
    profiles: tuple[str, ...] = ("handheld", "cart")
    seed: Seed = 0
    size: Annotated[int, Range(32)] = 256
    frames_per_sweep: PosInt = 32
    ga_min_weeks: Annotated[float, Range(12, 42)] = 18.0
    ga_max_weeks: Annotated[float, Range(12, 42)] = 38.0
    ga_spread: Literal["uniform", "stratified"] = "uniform"
    sweeps: tuple[str, ...] = SWEEPS
    fps: PosInt = 10
    scatterer_spacing_cm: PosFloat = 0.04
    workers: PosInt = 1
    contact_sheet: bool = True
    extra_profiles: tuple[Profile, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class SweepRender:
    """One sweep in one profile: fan images (T, S, S) uint8 without overlay, label maps, plane names, and the
    ground truth of every other profile in this profile's geometry."""

    frames: np.ndarray
    label_map: np.ndarray
    planes: list[str]
    gts: dict[str, np.ndarray]


def check_config(cfg: SimConfig) -> None:
    """Raise SonoshiftError on impossible settings."""
    if cfg.patients < 1 or cfg.frames_per_sweep < 1:
        raise SonoshiftError("simulate needs at least 1 patient and 1 frame per sweep.")
    if cfg.size < 32 or cfg.size % 2:
        raise SonoshiftError(f"simulate --size must be an even number >= 32, got {cfg.size}.")
    if not (12.0 <= cfg.ga_min_weeks <= cfg.ga_max_weeks <= 42.0):
        raise SonoshiftError(f"gestational age range [{cfg.ga_min_weeks}, {cfg.ga_max_weeks}] must lie in 12-42 weeks.")
    if cfg.ga_spread not in ("uniform", "stratified"):
        raise SonoshiftError(f"ga_spread must be 'uniform' or 'stratified', got {cfg.ga_spread!r}.")
    known = SWEEPS + STANDARD_SWEEPS
    bad = [s for s in cfg.sweeps if s not in known]
    if bad:
        raise SonoshiftError(f"unknown sweep '{bad[0]}' (known: {', '.join(known)}).")


def resolve_profiles(cfg: SimConfig) -> list[Profile]:
    """The profiles of ``cfg`` (names or YAML paths, then ``extra_profiles``); names must be unique, at least 2."""
    profiles = [load_profile(p) for p in cfg.profiles] + list(cfg.extra_profiles)
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise SonoshiftError(f"profile names must be unique, got {names}.")
    if len(profiles) < 1:
        raise SonoshiftError("simulate needs at least one scanner profile.")
    return profiles


def patient_id(index: int) -> str:
    return f"P{index + 1:04d}"


def patient_phantom(cfg: SimConfig, index: int) -> Phantom:
    """Patient ``index``'s phantom: GA uniform in the configured range, pose from the patient's generator."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, index, 0]))
    ga = float(rng.uniform(cfg.ga_min_weeks, cfg.ga_max_weeks))
    if cfg.ga_spread == "stratified":
        span = cfg.ga_max_weeks - cfg.ga_min_weeks
        u = (ga - cfg.ga_min_weeks) / span if span > 0 else 0.5  # the same draw, as a position in the stratum
        ga = cfg.ga_min_weeks + span * (index + u) / cfg.patients
    return build_phantom(ga, rng)


def scatterer_bank(cfg: SimConfig) -> ScattererBank:
    """The run's scatterer tables (same seed -> same tables in every worker)."""
    return make_bank(np.random.default_rng(np.random.SeedSequence([cfg.seed, 7_777_777])))


def make_views(profiles: list[Profile], size: int) -> dict[str, View]:
    """One View per profile; profiles with equal geometry share the same View object."""
    by_geometry: dict = {}
    for p in profiles:
        if p.geometry not in by_geometry:
            by_geometry[p.geometry] = make_view(p.geometry, size)
    return {p.name: by_geometry[p.geometry] for p in profiles}


def render_sweep(
    cfg: SimConfig,
    phantom: Phantom,
    patient: int,
    sweep: int,
    profiles: list[Profile],
    views: dict[str, View],
    bank: ScattererBank,
) -> dict[str, SweepRender]:
    """Render sweep number ``sweep`` (index into cfg.sweeps) of patient ``patient`` for every profile.

    Each frame is sliced once per distinct geometry; every profile's chain renders that slice with the noise
    stream of (frame, profile), so the ground truth of q in p's geometry with p = q is p's own frame.
    """
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, patient, 1 + sweep]))
    planes = sweep_planes(phantom, cfg.sweeps[sweep], cfg.frames_per_sweep, rng)
    keys = rng.integers(0, 2**62, size=cfg.frames_per_sweep)
    T, S = cfg.frames_per_sweep, cfg.size
    out = {
        p.name: SweepRender(np.zeros((T, S, S), np.uint8), np.zeros((T, S, S), np.uint8), [],
                            {q.name: np.zeros((T, S, S), np.uint8) for q in profiles if q.name != p.name})
        for p in profiles
    }
    for k, plane in enumerate(planes):
        fkey = FrameKey(cfg.seed, patient, sweep, k)
        done: dict[int, dict[str, np.ndarray]] = {}
        for p in profiles:
            view = views[p.name]
            if id(view) not in done:
                sl = slice_view(phantom, plane, view, bank, int(keys[k]), cfg.scatterer_spacing_cm)
                imgs = {q.name: render_slice(sl, view, q, fkey) for q in profiles}
                done[id(view)] = {"label_map": sl.label_map, **imgs}
            res, cache = out[p.name], done[id(view)]
            res.frames[k] = cache[p.name]
            res.label_map[k] = cache["label_map"]
            res.planes.append(plane_label(phantom, plane, cache["label_map"], view.px_per_cm))
            for q in res.gts:
                res.gts[q][k] = cache[q]
    return out


def _clock_start(cfg: SimConfig, patient: int) -> float:
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, patient, 999]))
    return float(rng.uniform(8 * 3600, 17 * 3600))


def _write_sweep(cfg: SimConfig, root: Path, patient: int, sweep: int, profiles: list[Profile]) -> list[dict]:
    """Render and write one (patient, sweep) for all profiles; returns the metadata rows and spec items."""
    views, bank = _cached_views_and_bank(cfg, profiles)
    phantom = patient_phantom(cfg, patient)
    pid = patient_id(patient)
    video_id = f"{pid}_{cfg.sweeps[sweep]}"
    renders = render_sweep(cfg, phantom, patient, sweep, profiles, views, bank)
    t0 = _clock_start(cfg, patient) + 75.0 * sweep
    records = []
    for p in profiles:
        res, view = renders[p.name], views[p.name]
        stem = f"{video_id}_{p.name}"
        forbidden = overlay.keep_out(view)
        static = overlay.static_layer(view, p, pid)
        T = cfg.frames_per_sweep
        frames = np.stack([
            overlay.burn_in(res.frames[k], [static, overlay.dynamic_layer(view, p, k, T, t0 + k / cfg.fps)], forbidden)
            for k in range(T)
        ])
        paths = {"video": f"videos/{stem}.mp4", "planes": f"planes/{stem}.csv",
                 "label_map": f"aligned/label_map/{stem}.npy"}
        write_mp4(root / paths["video"], frames, fps=cfg.fps)
        np.save(root / paths["label_map"], res.label_map)
        for q, gt in res.gts.items():
            paths[f"gt_{q}"] = f"aligned/gt_{q}/{stem}.npy"
            np.save(root / paths[f"gt_{q}"], gt)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["frame_index", "plane"])
        w.writerows([k, res.planes[k]] for k in range(T))
        (root / paths["planes"]).write_text(buf.getvalue(), encoding="utf-8")
        records.append({"patient_id": pid, "profile": p.name, "sweep": cfg.sweeps[sweep], "video_id": video_id,
                        "ga_weeks": round(phantom.ga_weeks, 2), "planes": res.planes, "paths": paths})
    return records


_CACHE: dict = {}


def _cached_views_and_bank(cfg: SimConfig, profiles: list[Profile]) -> tuple[dict[str, View], ScattererBank]:
    """Views and scatterer bank, built once per process (each worker renders many sweeps of the same run)."""
    key = (cfg.seed, cfg.size, tuple((p.name, p.geometry) for p in profiles))
    if _CACHE.get("key") != key:
        _CACHE.update(key=key, views=make_views(profiles, cfg.size), bank=scatterer_bank(cfg))
    return _CACHE["views"], _CACHE["bank"]


def _spec(records: list[dict], profiles: list[Profile]) -> dict:
    items = []
    for r in records:
        aligned = {name: path for name, path in r["paths"].items() if name == "label_map" or name.startswith("gt_")}
        items.append({
            "path": r["paths"]["video"],
            "domain": r["profile"],
            "patient_id": r["patient_id"],
            "video_id": r["video_id"],
            "labels": {"ga_weeks": r["ga_weeks"], "sweep": r["sweep"]},
            "frame_labels": r["paths"]["planes"],
            "aligned": aligned,
        })
    # paired: every domain shows the same patients (one phantom, several scanners), so prepare keeps each patient
    # in the same split in all domains.
    return {"name": "sonoshift-vsi-phantom", "paired": True, "domains": [p.name for p in profiles], "items": items}


def _metadata_csv(records: list[dict], profiles: list[Profile]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    gt_cols = [f"gt_{p.name}_path" for p in profiles]
    w.writerow(["patient_id", "profile", "sweep", "video_id", "frame_index", "ga_weeks", "plane", "video_path",
                "label_map_path", *gt_cols])
    for r in records:
        for k, plane in enumerate(r["planes"]):
            gts = [r["paths"].get(c[: -len("_path")], "") for c in gt_cols]
            w.writerow([r["patient_id"], r["profile"], r["sweep"], r["video_id"], k, r["ga_weeks"], plane,
                        r["paths"]["video"], r["paths"]["label_map"], *gts])
    return buf.getvalue()


def simulate(out: str | Path, cfg: SimConfig = SimConfig(), progress: bool = True, *, force: bool = False) -> Path:
    """Simulate the dataset described by ``cfg`` into the folder ``out``, written atomically.

    ``out`` follows the output policy (sonoshift.outputs): the same simulation already there is reused,
    ``force`` replaces an earlier simulation, anything else at ``out`` is refused. Returns the folder. ``cfg.workers`` > 1 renders (patient, sweep) units in that many processes; the result does
    not depend on it.
    """
    from sonoshift.outputs import Stamp, claim_folder, settings_key, write_stamp

    check_config(cfg)
    profiles = resolve_profiles(cfg)
    out = Path(out)
    settings = {k: v for k, v in to_dict(cfg).items() if k != "workers"}  # the result does not depend on workers
    key = settings_key({"config": settings, "profiles": [to_dict(p) for p in profiles]})
    legacy = (lambda p: Stamp("simulation", None) if (p / "simulation.json").is_file() else None)  # noqa: E731
    if claim_folder(out, "simulation", key, force=force, legacy=legacy) == "reuse":
        return out
    units = [(i, j) for i in range(cfg.patients) for j in range(len(cfg.sweeps))]
    with atomic_dir(out) as root:
        write_stamp(root, "simulation", key)
        for sub in ["videos", "planes", "aligned/label_map", *[f"aligned/gt_{p.name}" for p in profiles]]:
            (root / sub).mkdir(parents=True, exist_ok=True)
        results: dict[tuple[int, int], list[dict]] = {}
        with make_progress() as bar:
            task = bar.add_task("simulate", total=len(units), info=f"{len(profiles)} profiles", visible=progress)
            if cfg.workers > 1:
                with ProcessPoolExecutor(max_workers=cfg.workers) as pool:
                    futures = {pool.submit(_write_sweep, cfg, root, i, j, profiles): (i, j) for i, j in units}
                    for fut in as_completed(futures):
                        results[futures[fut]] = fut.result()
                        bar.advance(task)
            else:
                for i, j in units:
                    results[(i, j)] = _write_sweep(cfg, root, i, j, profiles)
                    bar.advance(task)
        records = [r for unit in units for r in results[unit]]
        (root / "sonoshift_spec.yaml").write_text(yaml.safe_dump(_spec(records, profiles), sort_keys=False))
        (root / "metadata.csv").write_text(_metadata_csv(records, profiles), encoding="utf-8")
        labels = {"classes": {str(i): n for i, n in enumerate(LABEL_NAMES)}, "background": 0, "planes": list(PLANES)}
        (root / "labels.json").write_text(json.dumps(labels, indent=2), encoding="utf-8")
        meta = {"sonoshift_version": sonoshift.__version__,
                "config": {k: v for k, v in to_dict(cfg).items() if k != "extra_profiles"},
                "profiles": [to_dict(p) for p in profiles]}
        (root / "simulation.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if cfg.contact_sheet:
            write_contact_sheet(root, records, profiles, root / "contact_sheet.png")
    return out


def default_workers() -> int:
    """Worker processes for the CLI default: the CPU cores available to this process, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(1, min(4, n))
