"""`sonoshift train ddgan` and `sonoshift train cascade`: the diffusion GAN and the CycleGAN -> diffusion cascade."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.cli.train import report, train_app

_OVERRIDES = "key=value config overrides, e.g. schedule.stride=170 optim.lr_g=1e-4 cyclegan=runs/cg."


@train_app.command("ddgan")
def ddgan_cmd(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset folder (output of `sonoshift prepare`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, logs, TensorBoard)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config, e.g. configs/cpu/ddgan.yaml."),
    cyclegan: Path | None = typer.Option(None, "--cyclegan", help="Trained CycleGAN run/checkpoint (sets `cyclegan`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a conditional denoising diffusion GAN; its condition is made by a frozen, trained CycleGAN."""
    from sonoshift.config import load_config
    from sonoshift.methods.ddgan import DDGANConfig, train_ddgan

    extra = [f"cyclegan={cyclegan}"] if cyclegan is not None else []
    cfg = load_config(DDGANConfig, config, [*(overrides or []), *extra])
    report(train_ddgan(data, cfg, out, resume=resume, progress=not quiet), out)


@train_app.command("cascade")
def cascade_cmd(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES + " joint.enabled=true fine-tunes the CycleGAN."),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset folder (output of `sonoshift prepare`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, logs, TensorBoard)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config, e.g. configs/cpu/cascade.yaml."),
    cyclegan: Path | None = typer.Option(None, "--cyclegan", help="Trained CycleGAN run/checkpoint (sets `cyclegan`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train the CycleGAN -> diffusion cascade: a refiner conditioned on the CycleGAN round trip of each target."""
    from sonoshift.config import load_config
    from sonoshift.methods.cascade import CascadeConfig, train_cascade

    extra = [f"cyclegan={cyclegan}"] if cyclegan is not None else []
    cfg = load_config(CascadeConfig, config, [*(overrides or []), *extra])
    report(train_cascade(data, cfg, out, resume=resume, progress=not quiet), out)
