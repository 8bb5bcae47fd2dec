"""`sonoshift prepare`: domain folders or a dataset spec -> a prepared dataset (docs/formats.md section 2)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from sonoshift.config import load_config
from sonoshift.data.prepare import PrepareConfig, prepare, summary
from sonoshift.data.public import LOADERS, african_planes_spec, fetal_planes_db_spec, hc18_spec
from sonoshift.errors import SonoshiftError

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Separate input paths from ``key=value`` overrides (an existing path is always an input)."""
    inputs, overrides = [], []
    for a in args:
        (overrides if _OVERRIDE.match(a) and not Path(a).exists() else inputs).append(a)
    return inputs, overrides


def prepare_cmd(
    args: list[str] = typer.Argument(
        None,
        help="Two or more domain folders, or one spec YAML / folder with sonoshift_spec.yaml; then optional "
        "key=value overrides (e.g. resize.size=128 split.seed=3).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created atomically; the same dataset already "
                             "there is reused, anything else refused)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML file with a PrepareConfig."),
    public: str | None = typer.Option(
        None, "--public", help=f"Prepare a public dataset instead of inputs: {', '.join(LOADERS)}."
    ),
    data_root: Path = typer.Option(
        Path("..") / "shared" / "data", "--data-root", help="Folder holding the public datasets (with --public)."
    ),
    domains: str | None = typer.Option(
        None, "--domains", help="With --public: comma-separated machines/centres to keep (e.g. 'Aloka,Voluson E6')."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a prepared dataset already in --out (never other files)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Ingest, crop the field of view, harmonize frame counts, split by patient, resize and write the dataset."""
    inputs, overrides = split_args(list(args or []))
    cfg = load_config(PrepareConfig, config, overrides)
    if public is not None:
        if inputs:
            raise SonoshiftError(f"give either input folders/spec or --public, not both (got {inputs[0]}).")
        spec = public_spec(public, data_root, domains)
        result = prepare(spec, out, cfg, progress=not quiet, force=force)
    else:
        result = prepare(inputs, out, cfg, progress=not quiet, force=force)
    if result.reused:
        typer.echo(f"{out} already holds this dataset; reused it.")
    typer.echo(summary(result.info, result.out))


def public_spec(name: str, data_root: Path, domains: str | None):
    """The DatasetSpec of public dataset ``name`` under ``data_root``, optionally only some domains."""
    if name not in LOADERS:
        raise SonoshiftError(f"unknown public dataset {name!r} (known: {', '.join(LOADERS)}).")
    keep = [d.strip() for d in domains.split(",") if d.strip()] if domains else None
    if name == "fetal_planes_db":
        return fetal_planes_db_spec(data_root, machines=keep)
    if name == "african_planes":
        return african_planes_spec(data_root, centers=keep)
    if keep is not None:
        raise SonoshiftError("--domains does not apply to hc18 (a single domain).")
    return hc18_spec(data_root)


def register(app: typer.Typer) -> None:
    """Add `prepare` to the CLI."""
    app.command("prepare")(prepare_cmd)
