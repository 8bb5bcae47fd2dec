"""`sonoshift report`: a verdict-first HTML page, tables, violin plots and qualitative figures from evaluated run
folders."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.cli.evaluate import split_run_args
from sonoshift.config import load_config


def report_cmd(
    args: list[str] = typer.Argument(
        ..., help="Run folders scored by `sonoshift evaluate`, then optional key=value overrides "
        "(grid_frames=6 overlays=false violins=false figure=false)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (created atomically; an earlier identical report "
                             "there is reused, anything else refused)."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier report in --out (never other files)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file with a ReportConfig."),
) -> None:
    """One HTML page that leads with the verdict (does each method beat the untranslated frames?), a Figure-4 style
    figure, Table III (Markdown, CSV, LaTeX), violins per metric and a qualitative grid."""
    from sonoshift.report import ReportConfig, make_report

    runs, overrides = split_run_args(args)
    cfg = load_config(ReportConfig, config, overrides)
    path = make_report(runs, out, cfg, force=force)
    typer.echo(f"wrote {path / 'index.html'}")


def register(app: typer.Typer) -> None:
    """Add `report` to the CLI."""
    app.command("report")(report_cmd)
