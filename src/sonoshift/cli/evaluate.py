"""`sonoshift evaluate`: per-frame metrics of translation run folders (docs/formats.md section 3)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from sonoshift.config import load_config

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def split_run_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate run folders from ``key=value`` overrides (an existing path is always a run folder)."""
    runs, overrides = [], []
    for a in args:
        (overrides if _OVERRIDE.match(a) and not Path(a).exists() else runs).append(a)
    return runs, overrides


def evaluate_cmd(
    args: list[str] = typer.Argument(
        ..., help="Run folders written by `sonoshift harmonize`, then optional key=value overrides "
        "(e.g. modes=target,gt use_mask=false lpips=vgg lpips_weights=~/weights css_variant=product)."
    ),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file with an EvaluateConfig."),
    segmenter: Path | None = typer.Option(
        None, "--segmenter", help="Segmenter checkpoint: also write segmentation.csv (Dice/HD95 of the source frames "
        "before and after harmonization, against the source label maps)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace metrics that an earlier evaluate with other settings "
                               "wrote into the run folders."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Score each translated frame against its paired target, its own source and the ground truth (if any).

    Several runs are evaluated together: if one fails, none of them gets new files.
    """
    from sonoshift.errors import SonoshiftError
    from sonoshift.evaluate import EvaluateConfig, evaluate_runs

    runs, overrides = split_run_args(args)
    if not runs:
        raise SonoshiftError("give at least one run folder to evaluate.")
    cfg = load_config(EvaluateConfig, config, overrides)
    for run, done in zip(runs, evaluate_runs(runs, cfg, segmenter=segmenter, progress=not quiet, force=force)):
        if done.reused:
            typer.echo(f"{run} was already evaluated with these settings; kept {done.metrics} (--force redoes it)")
            continue
        typer.echo(f"wrote {done.metrics}")
        if done.segmentation is not None:
            from sonoshift.downstream.evaluate_seg import summarize_segmentation

            typer.echo(f"wrote {Path(run) / 'segmentation.csv'}")
            typer.echo(summarize_segmentation(done.segmentation).to_string(index=False))


def register(app: typer.Typer) -> None:
    """Add `evaluate` to the CLI."""
    app.command("evaluate")(evaluate_cmd)
