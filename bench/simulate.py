"""Benchmark of the VSI phantom simulator: frames per second at SIZE x SIZE per profile, against a baseline.

    python bench/simulate.py [--size 256] [--frames 32] [--profiles handheld,cart] [--threads 1]

Prints, per profile, the frames/s of (a) the profile's own video frame (slice + its chain) and (b) the full
per-frame work simulate does (slice + own frame + ground truth of every other profile in this geometry), both
for the optimized path (cached polar grids and scan-conversion maps, block-culled slicing, FFT PSF with cached
transfer functions, one shared slice and scatterer set per geometry) and for a straightforward baseline (everything
rebuilt per frame and per profile pair, shapes evaluated on the whole grid), run side by side in this process.
Finally it times simulate() end to end (MP4 + npy writing) for a small dataset. Rates come from CPU time (so
they do not depend on other jobs sharing the machine); the end-to-end line gives wall time as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import tempfile
import time

import numpy as np

from sonoshift.errors import exit_on_error


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--baseline-frames", type=int, default=8)
    ap.add_argument("--profiles", default="handheld,cart")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenCV threads (the simulator is single-threaded)")
    ap.add_argument("--e2e-patients", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--gap-patients", type=int, default=3, help="patients for the domain-gap numbers (0: skip)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import cv2

    cv2.setNumThreads(args.threads)
    from sonoshift.sim import psf
    from sonoshift.sim.chain import acoustic_slice, render_acoustic
    from sonoshift.sim.render import FrameKey, render_slice, slice_view
    from sonoshift.sim.scan_convert import make_view, scan_convert
    from sonoshift.sim.simulate import (
        SimConfig,
        make_views,
        patient_phantom,
        resolve_profiles,
        scatterer_bank,
        simulate,
    )
    from sonoshift.sim.speckle import scatterers, texture
    from sonoshift.sim.sweeps import sweep_planes

    cfg = SimConfig(patients=1, profiles=tuple(args.profiles.split(",")), size=args.size,
                    frames_per_sweep=args.frames, seed=0)
    profiles = resolve_profiles(cfg)
    views = make_views(profiles, cfg.size)
    bank = scatterer_bank(cfg)
    phantom = patient_phantom(cfg, 0)
    planes = sweep_planes(phantom, "tr-mid", args.frames, np.random.default_rng(0))
    keys = np.random.default_rng(1).integers(0, 2**62, args.frames)
    spacing = cfg.scatterer_spacing_cm
    print(f"size {args.size}x{args.size}, {args.frames} frames (tr-mid sweep, GA {phantom.ga_weeks:.1f} wk), "
          f"profiles {[p.name for p in profiles]}, cpu affinity {len(os.sched_getaffinity(0))} cores, "
          f"load average {os.getloadavg()[0]:.1f}")

    clock = time.process_time  # CPU time of this process: robust to other jobs sharing the cores

    def optimized(p, n):
        view = views[p.name]
        slice_view(phantom, planes[0], view, bank, int(keys[0]), spacing)  # warm caches
        t_own = t_all = 0.0
        for k in range(n):
            t0 = clock()
            sl = slice_view(phantom, planes[k], view, bank, int(keys[k]), spacing)
            render_slice(sl, view, p, FrameKey(0, 0, 0, k))
            t1 = clock()
            for q in profiles:
                if q.name != p.name:
                    render_slice(sl, view, q, FrameKey(0, 0, 0, k))
            t2 = clock()
            t_own += t1 - t0
            t_all += t2 - t0
        return n / t_own, n / t_all

    def baseline(p, n):
        # Straightforward: per frame and per rendered profile, rebuild the geometry, slice every shape on the
        # whole grid, resample scatterers, recompute PSF transfer functions; no sharing between profiles.
        t_own = t_all = 0.0
        for k in range(n):
            t0 = clock()
            for j, q in enumerate([p] + [q for q in profiles if q.name != p.name]):
                psf.psf_filter.cache_clear()
                view = make_view(p.geometry, args.size)
                labels = phantom.slice(planes[k], view.X, view.Y)
                z, u = scatterers(bank, view.X, view.Y, int(keys[k]), spacing)
                tex = texture(bank, view.X, view.Y, int(keys[k]))
                scan_convert(labels, view, nearest=True)
                rng = FrameKey(0, 0, 0, k).noise_rng(q.name)
                render_acoustic(acoustic_slice(labels, z, u, view, tex), view, q, rng)
                if j == 0:
                    t_own += clock() - t0
            t_all += clock() - t0
        return n / t_own, n / t_all

    print("frames/s from CPU time of one core (own = the profile's video frame; own+GT = with the ground truth of "
          "every other profile in its geometry)")
    print(f"{'profile':10s} {'own fps':>9s} {'base':>7s} {'x':>5s} | {'own+GT fps':>10s} {'base':>7s} {'x':>5s}")
    for p in profiles:
        o_own, o_all = optimized(p, args.frames)
        b_own, b_all = baseline(p, args.baseline_frames)
        own = f"{o_own:9.1f} {b_own:7.1f} {o_own / b_own:5.1f}"
        print(f"{p.name:10s} {own} | {o_all:10.1f} {b_all:7.1f} {o_all / b_all:5.1f}")

    if args.gap_patients > 0:
        domain_gap(dataclasses.replace(cfg, patients=args.gap_patients, frames_per_sweep=8), profiles)

    for workers in sorted({1, args.workers}):
        e2e = dataclasses.replace(cfg, patients=args.e2e_patients, workers=workers, contact_sheet=False)
        n_frames = e2e.patients * len(e2e.sweeps) * e2e.frames_per_sweep
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), _cpu()
            simulate(os.path.join(tmp, "sim"), e2e, progress=False)
            dt, cpu = time.perf_counter() - t0, _cpu() - c0
        print(f"simulate() end to end, workers={workers}: {e2e.patients} patients x {len(e2e.sweeps)} sweeps x "
              f"{e2e.frames_per_sweep} frames x {len(profiles)} profiles: wall {dt:.1f} s "
              f"({n_frames / dt:.1f} frames/s per profile), CPU {cpu:.1f} s ({n_frames / cpu:.1f} frames/s per profile "
              f"per core; each video frame comes with its ground truth); load average {os.getloadavg()[0]:.1f}")


def _bc(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya coefficient of two 256-bin grey-level histograms."""
    p = np.bincount(a, minlength=256) / a.size
    q = np.bincount(b, minlength=256) / b.size
    return float(np.sum(np.sqrt(p * q)))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 arrays scaled to [0, 1]: 10 log10(1 / MSE)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2) / 255.0**2
    return float(10 * np.log10(1.0 / mse))


def domain_gap(cfg, profiles) -> None:
    """Per frame, on the fan of the source geometry: BC(source, target GT), PSNR(source, target GT) and
    PSNR(target GT, the target chain re-rendered with fresh noise); mean +- std over all frames of all sweeps."""
    from sonoshift.sim.chain import render_acoustic
    from sonoshift.sim.render import FrameKey, slice_view
    from sonoshift.sim.simulate import make_views, patient_phantom, scatterer_bank
    from sonoshift.sim.sweeps import sweep_planes

    views = make_views(profiles, cfg.size)
    bank = scatterer_bank(cfg)
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    fresh_rng = np.random.default_rng(2024)
    for i in range(cfg.patients):
        phantom = patient_phantom(cfg, i)
        for j, sweep in enumerate(cfg.sweeps):
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, i, 1 + j]))
            planes = sweep_planes(phantom, sweep, cfg.frames_per_sweep, rng)
            keys = rng.integers(0, 2**62, size=cfg.frames_per_sweep)
            for k, plane in enumerate(planes):
                for p in profiles:
                    view = views[p.name]
                    sl = slice_view(phantom, plane, view, bank, int(keys[k]), cfg.scatterer_spacing_cm)
                    key = FrameKey(cfg.seed, i, j, k)
                    src = render_acoustic(sl.acoustic, view, p, key.noise_rng(p.name))[view.mask]
                    for q in profiles:
                        if q.name == p.name:
                            continue
                        gt = render_acoustic(sl.acoustic, view, q, key.noise_rng(q.name))[view.mask]
                        again = render_acoustic(sl.acoustic, view, q, fresh_rng)[view.mask]
                        rows.setdefault((p.name, q.name), []).append((_bc(src, gt), _psnr(src, gt), _psnr(gt, again)))
    n = cfg.patients * len(cfg.sweeps) * cfg.frames_per_sweep
    print(f"domain gap over {n} frames ({cfg.patients} patients x {len(cfg.sweeps)} sweeps x {cfg.frames_per_sweep}), "
          f"fan pixels, mean +- std:")
    print(f"{'source -> target':22s} {'BC(src, GT)':>15s} {'PSNR(src, GT)':>17s} {'PSNR(GT, GT fresh noise)':>26s}")
    for (p, q), vals in rows.items():
        v = np.array(vals)
        m, s = v.mean(axis=0), v.std(axis=0)
        pair = f"{p} -> {q}"
        print(f"{pair:22s} {m[0]:8.3f} +- {s[0]:.3f} {m[1]:9.2f} +- {s[1]:.2f} dB {m[2]:15.2f} +- {s[2]:.2f} dB")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (worker processes)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    exit_on_error(main)
