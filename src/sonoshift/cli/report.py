"""`sonoshift report`: tables, violin plots, qualitative grid and an HTML page from evaluated run folders."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.cli.evaluate import split_run_args
from sonoshift.config import load_config


def report_cmd(
    args: list[str] = typer.Argument(
        ..., help="Run folders scored by `sonoshift evaluate`, then optional key=value overrides "
        "(grid_frames=6 overlays=false violins=false)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (created atomically; an earlier identical report "
                             "there is reused, anything else refused)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier report in --out (never other files)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file with a ReportConfig."),
) -> None:
    """Table III layout (Markdown, CSV, LaTeX), violins per metric, qualitative grid, one HTML page."""
    from sonoshift.report import ReportConfig, make_report

    runs, overrides = split_run_args(args)
    cfg = load_config(ReportConfig, config, overrides)
    path = make_report(runs, out, cfg, force=force)
    typer.echo(f"wrote {path / 'index.html'}")


def register(app: typer.Typer) -> None:
    """Add `report` to the CLI."""
    app.command("report")(report_cmd)
