"""`sonoshift distill TEACHER -o STUDENT`: a compact student that reproduces a trained translator."""

from __future__ import annotations

from pathlib import Path

import typer


def distill_cmd(
    teacher: Path = typer.Argument(..., help="The trained translator to distil (run folder or checkpoint)."),
    overrides: list[str] = typer.Argument(None, help="key=value config overrides, e.g. model.arch=mobile_unet."),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset: the student trains on its source frames."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder of the student (checkpoints, logs)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config, e.g. configs/cpu/student.yaml."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from the latest checkpoint in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Distil a translator (CycleGAN, DDGAN, cascade) into a small student: L1 to the teacher + a GAN term
    (the same as `sonoshift train student --teacher TEACHER`)."""
    from sonoshift.cli.train import report
    from sonoshift.config import load_config
    from sonoshift.methods import config_label
    from sonoshift.methods.student import StudentConfig, distill

    cfg = load_config(StudentConfig, config, [*(overrides or []), f"teacher={teacher}"])
    report(distill(teacher, data, cfg, out, resume=resume, progress=not quiet, config_name=config_label(config)), out)


def register(app: typer.Typer) -> None:
    """Add `distill` to the CLI."""
    app.command("distill")(distill_cmd)
