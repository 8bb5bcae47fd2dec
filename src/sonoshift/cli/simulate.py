"""``sonoshift simulate``: the VSI phantom simulator (multi-scanner fetal ultrasound cine-loops)."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.progress import console


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        overrides: list[str] = typer.Argument(None, help="key=value settings of the simulation applied after the "
                                              "options, e.g. fps=15 scatterer_spacing_cm=0.03."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (created atomically; an earlier identical "
                                 "simulation there is reused, anything else refused)."),
        patients: int = typer.Option(4, "--patients", help="Number of simulated patients."),
        profiles: str = typer.Option("handheld,cart", "--profiles",
                                     help="Comma-separated scanner profiles: built-in names (handheld, cart, phased) "
                                          "or YAML paths."),
        seed: int = typer.Option(0, "--seed", help="Seed of all randomness."),
        size: int = typer.Option(256, "--size", help="Frame size in pixels (square, even)."),
        frames_per_sweep: int = typer.Option(32, "--frames-per-sweep", help="Frames per VSI sweep cine-loop."),
        ga_min: float = typer.Option(18.0, "--ga-min", help="Smallest gestational age (weeks)."),
        ga_max: float = typer.Option(38.0, "--ga-max", help="Largest gestational age (weeks)."),
        sweeps: str = typer.Option("", "--sweeps", help="Comma-separated subset of the six VSI sweeps (default all)."),
        workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per available core, at most 4)."),
        force: bool = typer.Option(False, "--force", help="Replace an earlier simulation in --out (never other files)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Simulate multi-scanner VSI fetal ultrasound with per-frame labels and cross-profile ground truth."""
        from sonoshift.config import apply_overrides
        from sonoshift.sim.simulate import SimConfig, default_workers, simulate
        from sonoshift.sim.sweeps import SWEEPS

        cfg = SimConfig(
            patients=patients,
            profiles=tuple(p.strip() for p in profiles.split(",") if p.strip()),
            seed=seed,
            size=size,
            frames_per_sweep=frames_per_sweep,
            ga_min_weeks=ga_min,
            ga_max_weeks=ga_max,
            sweeps=tuple(s.strip() for s in sweeps.split(",") if s.strip()) or SWEEPS,
            workers=workers if workers > 0 else default_workers(),
        )
        cfg = apply_overrides(cfg, overrides or [])
        path = simulate(out, cfg, progress=not quiet, force=force)
        n_sweeps, n_profiles = len(cfg.sweeps), len(cfg.profiles)
        console.print(f"simulated {cfg.patients} patients x {n_sweeps} sweeps x {n_profiles} profiles -> {path}")
