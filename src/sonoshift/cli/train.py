"""`sonoshift train <method>`: one typer sub-app; each method module adds its command to ``train_app``.

Other methods register their commands from their own CLI module with
``from sonoshift.cli.train import train_app`` and ``@train_app.command("ddgan")``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

train_app = typer.Typer(help="Train a harmonization model on a prepared dataset.", no_args_is_help=True)


def report(result, out: Path) -> None:
    """Print how a run ended; exit 130 after a Ctrl-C (checkpoint saved)."""
    if result.interrupted:
        typer.echo(f"interrupted at step {result.step}; checkpoint saved to {result.checkpoint}; "
                   f"continue with the same command and --resume.", err=True)
        sys.exit(130)
    losses = " ".join(f"{k}={v:.4g}" for k, v in result.losses.items())
    typer.echo(f"trained {result.step} step{'s' if result.step != 1 else ''} ({epochs_text(result)}) into {out}; last checkpoint {result.checkpoint}")
    if losses:
        typer.echo(f"last losses: {losses}")


def epochs_text(result) -> str:
    """``2 epochs``, ``1 epoch``, ``0.25 of an epoch`` from a TrainResult (never "0 epochs" after real steps)."""
    per = getattr(result, "steps_per_epoch", 0)
    if not per:
        return f"{result.epoch} epoch{'s' if result.epoch != 1 else ''}"
    e = result.step / per
    if e < 1:
        return f"{e:.2g} of an epoch"
    return f"{e:.3g} epoch{'s' if e != 1 else ''}"


def default_network_note(config: Path | None, method: str) -> None:
    """Say which network a run without ``-c`` trains (the paper-size defaults are slow on a CPU)."""
    if config is None:
        typer.echo(f"note: no -c/--config given, so this trains the paper-size {method} network (the defaults); "
                   f"on a CPU pass -c cpu/{method} for the small one.", err=True)


def config_name(path: Path | None) -> str | None:
    """``configs/cpu/cyclegan.yaml`` -> ``cpu/cyclegan`` (the parent folder and stem), None without a file."""
    return None if path is None else f"{Path(path).parent.name}/{Path(path).stem}"


@train_app.command("cyclegan")
def cyclegan_cmd(
    overrides: list[str] = typer.Argument(None, help="key=value config overrides, e.g. train.lr=1e-4 model.ngf=32."),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset folder (output of `sonoshift prepare`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, logs, TensorBoard)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config: a path or a named config, e.g. "
                                       "cpu/cyclegan (default: the paper-size network)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a CycleGAN (source <-> target) on a prepared dataset; torchrun launches it data-parallel."""
    from sonoshift.config import load_config
    from sonoshift.methods.cyclegan import CycleGANConfig, train_cyclegan

    default_network_note(config, "cyclegan")
    cfg = load_config(CycleGANConfig, config, overrides or [])
    report(train_cyclegan(data, cfg, out, resume=resume, progress=not quiet, config_name=config_name(config)), out)


def register(app: typer.Typer) -> None:
    """Add the `train` sub-app to the CLI."""
    app.add_typer(train_app, name="train")
