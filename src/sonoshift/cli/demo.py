"""`sonoshift demo`: prepare a two-domain dataset (Aloka -> Voluson E6) from the real FETAL_PLANES_DB images."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.data.prepare import PrepareConfig, prepare, summary
from sonoshift.data.public import fetal_planes_db_spec
from sonoshift.data.resize import ResizeConfig
from sonoshift.errors import SonoshiftError

SOURCE, TARGET = "Aloka", "Voluson E6"


def default_data_root() -> Path:
    """``../shared/data`` relative to the current folder, else relative to the repository holding this package."""
    candidates = [Path("..") / "shared" / "data", Path(__file__).resolve().parents[3].parent / "shared" / "data"]
    for c in candidates:
        if (c / "fetal_planes_db").is_dir():
            return c
    return candidates[0]


def run_demo(data_root: Path | None, out: Path, size: int = 256, progress: bool = True):
    """Prepare FETAL_PLANES_DB Aloka -> Voluson E6 into ``out``; returns the PrepareResult.

    data_root: the folder holding ``fetal_planes_db/`` (None: ``default_data_root()``); size: frame side in px.
    """
    data_root = default_data_root() if data_root is None else Path(data_root)
    fp = data_root / "fetal_planes_db"
    if not fp.is_dir():
        raise SonoshiftError(
            f"shared data folder {fp} does not exist; pass --data-root pointing at the folder that holds "
            "fetal_planes_db."
        )
    spec = fetal_planes_db_spec(data_root, machines=[SOURCE, TARGET])
    cfg = load_demo_config(size)
    return prepare(spec, out, cfg, progress=progress)


def load_demo_config(size: int) -> PrepareConfig:
    """The demo's PrepareConfig: default crop/split/frames, ``size`` pixels, pairs Aloka -> Voluson E6."""
    return PrepareConfig(resize=ResizeConfig(size=size), source_domain=SOURCE, target_domain=TARGET)


def demo_cmd(
    data_root: Path | None = typer.Option(
        None, "--data-root", help="Folder holding fetal_planes_db/ (default: ../shared/data from here or the repo)."
    ),
    out: Path = typer.Option(
        Path("runs") / "demo" / "data", "--out", "-o", help="Output folder of the prepared dataset."
    ),
    size: int = typer.Option(256, "--size", help="Prepared frame size in pixels."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Prepare the real FETAL_PLANES_DB Aloka -> Voluson E6 dataset and print a summary."""
    result = run_demo(data_root, out, size, progress=not quiet)
    if result.reused:
        typer.echo(f"{out} already holds the demo dataset; reused it.")
    typer.echo(summary(result.info, result.out))
    root = default_data_root() if data_root is None else data_root
    typer.echo(f"  source domain {SOURCE!r} -> target domain {TARGET!r}; data from {Path(root).resolve()}")


def register(app: typer.Typer) -> None:
    """Add `demo` to the CLI."""
    app.command("demo")(demo_cmd)
