"""`sonoshift difusal`: the self-improving synthesis loop (docs/difusal.md)."""

from __future__ import annotations

from pathlib import Path

import typer


def difusal_cmd(
    overrides: list[str] = typer.Argument(None, help="key=value config overrides, e.g. loop.rounds=3."),
    data: Path = typer.Option(..., "--data", "-d", help="Prepared dataset with plane (and ga_weeks) labels."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder; running again into it continues the run."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config, e.g. configs/cpu/difusal.yaml."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run (or continue) every arm and label regime round by round, then write RUN/report.html."""
    from sonoshift.config import load_config
    from sonoshift.difusal.config import DifusalConfig
    from sonoshift.difusal.report import write_report
    from sonoshift.difusal.rounds import run_difusal

    cfg = load_config(DifusalConfig, config, overrides or [])
    done = run_difusal(cfg, data, out, progress=not quiet)
    path = write_report(out)
    typer.echo(f"ran {len(done)} stage(s) (finished ones skipped); metrics: {out / 'metrics.csv'}; report: {path}")


def register(app: typer.Typer) -> None:
    app.command("difusal")(difusal_cmd)
