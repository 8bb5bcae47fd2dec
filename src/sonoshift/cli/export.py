"""`sonoshift export onnx RUN --out model.onnx`: a trained translator as one ONNX file (deploy/export.py)."""

from __future__ import annotations

from pathlib import Path

import typer

export_app = typer.Typer(help="Export trained models for deployment.", no_args_is_help=True)


@export_app.command("onnx")
def onnx_cmd(
    model: Path = typer.Argument(..., help="Run folder (latest checkpoint), checkpoint folder or model.safetensors."),
    out: Path = typer.Option(..., "--out", "-o", help="The .onnx file to write."),
    int8: str | None = typer.Option(None, "--int8", help="Quantize: 'static' (needs --calibration) or 'dynamic'."),
    calibration: Path | None = typer.Option(None, "--calibration", help="Prepared dataset whose source-domain train "
                                            "frames calibrate static int8 ranges."),
    reverse: bool = typer.Option(False, "--reverse", help="CycleGAN: export the target -> source generator."),
    opset: int = typer.Option(17, "--opset", min=13, help="ONNX opset."),
    force: bool = typer.Option(False, "--force", help="Replace this command's own earlier export made with other "
                                                      "settings (a file it did not write is never replaced)."),
) -> None:
    """Export a translator (CycleGAN/student generator; DDGAN/cascade sampler unrolled, noise as inputs)."""
    from sonoshift.deploy.export import export_onnx

    options = {"reverse": True} if reverse else {}
    path = export_onnx(model, out, opset=opset, int8=int8, calibration=calibration, force=force, **options)
    typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the `export` sub-app to the CLI."""
    app.add_typer(export_app, name="export")
