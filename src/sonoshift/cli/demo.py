"""`sonoshift demo`: the whole pipeline on simulated data (default) or on the real public data (`--real`)."""

from __future__ import annotations

from pathlib import Path

import typer


def demo_cmd(
    overrides: list[str] = typer.Argument(
        None, help="key=value settings, e.g. patients=6 study.steps.cyclegan=300 (see sonoshift.pipeline)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder (default runs/demo, or runs/real)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with the same keys as the overrides."),
    real: bool = typer.Option(False, "--real", help="Run on ../shared/data: FETAL_PLANES_DB and African centres."),
    data_root: Path | None = typer.Option(None, "--data-root", help="With --real: the shared data folder."),
    force: bool = typer.Option(False, "--force", help="Redo every stage instead of reusing finished ones."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    seeds: str | None = typer.Option(None, "--seeds", help="Comma-separated translator training seeds: one demo "
                                     "per seed under OUT/seed_<k>, then OUT/seeds.md (mean +- spread)."),
) -> None:
    """Simulate, prepare, train CycleGAN / diffusion GAN / cascade, harmonize, evaluate and report.

    Finished stages are reused when run again (Ctrl-C is safe: training resumes from its last checkpoint).
    """
    from sonoshift.config import load_config
    from sonoshift.pipeline.demo import DemoConfig, print_summary, run_demo

    items = list(overrides or [])
    if real:
        from sonoshift.pipeline.real import RealConfig, run_real

        if seeds:
            raise typer.BadParameter("--seeds is only used with the simulated demo, not with --real.")

        if data_root is not None:
            items.append(f"data_root={data_root}")
        summary = run_real(out or Path("runs/real"), load_config(RealConfig, config, items), force=force,
                           progress=not quiet)
        print_summary(summary, "sonoshift real-data run: done")
    elif seeds:
        from sonoshift.pipeline.seeds import run_demo_seeds

        if data_root is not None:
            raise typer.BadParameter("--data-root is only used with --real.")
        try:
            ks = tuple(int(k) for k in seeds.split(","))
        except ValueError:
            raise typer.BadParameter(f"--seeds takes comma-separated integers, got {seeds!r}.") from None
        res = run_demo_seeds(out or Path("runs/demo-full"), load_config(DemoConfig, config, items), ks, force=force,
                             progress=not quiet)
        for k, summary in res["seeds"].items():
            print_summary(summary, f"sonoshift demo, training seed {k}: done")
        print(Path(res["markdown"]).read_text())
    else:
        if data_root is not None:
            raise typer.BadParameter("--data-root is only used with --real.")
        summary = run_demo(out or Path("runs/demo"), load_config(DemoConfig, config, items), force=force,
                           progress=not quiet)
        print_summary(summary)


def register(app: typer.Typer) -> None:
    """Add `demo` to the CLI."""
    app.command("demo")(demo_cmd)
