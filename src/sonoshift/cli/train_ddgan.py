"""`sonoshift train ddgan` and `sonoshift train cascade`: the diffusion GAN and the CycleGAN -> diffusion cascade."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.cli.train import default_network_note, report, train_app
from sonoshift.errors import SonoshiftError

_OVERRIDES = "key=value config overrides, e.g. schedule.stride=170 optim.lr_g=1e-4 cyclegan=runs/cg."


def need_cyclegan(path: str, method: str) -> None:
    """The diffusion models are conditioned by a trained CycleGAN: say so, and how to give it, before anything runs."""
    if path and Path(path).exists():
        return
    where = f"; the config's cyclegan={path} does not exist" if path else ""
    raise SonoshiftError(f"`sonoshift train {method}` needs a trained CycleGAN to make its condition images: train one "
                         f"with `sonoshift train cyclegan` and pass its run folder with --cyclegan RUN{where}.")


@train_app.command("ddgan")
def ddgan_cmd(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset folder (output of `sonoshift prepare`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, logs, TensorBoard)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config: a path or a named config, e.g. "
                                       "cpu/ddgan (default: the paper-size network)."),
    cyclegan: Path | None = typer.Option(None, "--cyclegan", help="Run folder of `sonoshift train cyclegan`: its frozen "
                                         "generators make the condition of every training image (sets `cyclegan`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train a conditional denoising diffusion GAN; its condition is made by a frozen, trained CycleGAN."""
    from sonoshift.config import load_config
    from sonoshift.methods.ddgan import DDGANConfig, train_ddgan

    extra = [f"cyclegan={cyclegan}"] if cyclegan is not None else []
    default_network_note(config, "ddgan")
    cfg = load_config(DDGANConfig, config, [*(overrides or []), *extra])
    need_cyclegan(cfg.cyclegan, "ddgan")
    report(train_ddgan(data, cfg, out, resume=resume, progress=not quiet), out)


@train_app.command("cascade")
def cascade_cmd(
    overrides: list[str] = typer.Argument(None, help=_OVERRIDES + " joint.enabled=true fine-tunes the CycleGAN."),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset folder (output of `sonoshift prepare`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, logs, TensorBoard)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config: a path or a named config, e.g. "
                                       "cpu/cascade (default: the paper-size network)."),
    cyclegan: Path | None = typer.Option(None, "--cyclegan", help="Run folder of `sonoshift train cyclegan`: its frozen "
                                         "generators make the condition of every training image (sets `cyclegan`)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Train the CycleGAN -> diffusion cascade: a refiner conditioned on the CycleGAN round trip of each target."""
    from sonoshift.config import load_config
    from sonoshift.methods.cascade import CascadeConfig, train_cascade

    extra = [f"cyclegan={cyclegan}"] if cyclegan is not None else []
    default_network_note(config, "cascade")
    cfg = load_config(CascadeConfig, config, [*(overrides or []), *extra])
    need_cyclegan(cfg.cyclegan, "cascade")
    report(train_cascade(data, cfg, out, resume=resume, progress=not quiet), out)
