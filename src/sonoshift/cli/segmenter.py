"""``sonoshift segment ...``: train and apply the downstream segmenters (simulator target domain and HC18 heads)."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.cli.overrides import OVERRIDES_HELP, SET_HELP, merge_overrides
from sonoshift.errors import SonoshiftError

segment_app = typer.Typer(
    help="Downstream segmenters: train on the target domain or HC18, score runs before/after harmonization.",
    no_args_is_help=True,
)

CONFIG_HELP = "YAML config (frozen dataclass fields); defaults are the CPU settings."
def _device(spec: str):
    try:
        from sonoshift.engine.device import select_device
    except ImportError:  # the shared engine is optional here
        import torch

        if spec == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(spec)
    return select_device(spec)


FORCE_HELP = "Replace an earlier result of this command in --out (never files sonoshift did not write)."


def _claim(out: Path, kind: str, key: str, force: bool, marker: str) -> str:
    """The output policy (sonoshift.outputs) for ``out``; ``marker``: a file that outputs of this kind always hold."""
    from sonoshift.outputs import Stamp, claim_folder

    return claim_folder(out, kind, key, force=force,
                        legacy=lambda p: Stamp(kind, None) if (p / marker).is_file() else None)


def _print_table(df) -> None:
    typer.echo(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


@segment_app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="Prepared dataset folder (output of `sonoshift prepare`)."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    legacy: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    device: str = typer.Option("auto", help="auto, cpu, cuda[:i] or mps."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Train the target-domain U-Net on a prepared dataset's label maps and write a checkpoint."""
    from sonoshift.config import load_config
    from sonoshift.downstream.target_segmenter import SegmenterConfig, train_target_segmenter

    cfg = load_config(SegmenterConfig, config, merge_overrides(overrides, legacy))
    _claim(out, "segmenter", "", force, "segmenter.json")
    seg = train_target_segmenter(dataset, out, cfg, device=_device(device))
    val = seg.info.get("val_dice", {})
    typer.echo(f"segmenter ({', '.join(seg.classes)}) on domain '{seg.info['domain']}' written to {out}")
    if val:
        typer.echo("validation Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in val.items()))


@segment_app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Argument(..., help="Translation run folder (output of `sonoshift harmonize`)."),
    segmenter: Path = typer.Option(..., "--segmenter", help="Checkpoint folder from `sonoshift segment train`."),
    out: Path | None = typer.Option(None, "--out", "-o", help="CSV to write (default RUN/segmentation.csv)."),
) -> None:
    """Dice and HD95 of source, harmonized and ground-truth frames against the source label maps."""
    from sonoshift.downstream.evaluate_seg import evaluate_segmentation, summarize_segmentation

    table = evaluate_segmentation(run, segmenter, out)
    summary = summarize_segmentation(table)
    _print_table(summary[["method", "variant", "dice_mean_mean", "dice_mean_std", "hd95_mean_mean", "hd95_mean_std"]])
    typer.echo(f"per-frame table: {out or run / 'segmentation.csv'}")


@segment_app.command("train-hc18")
def train_hc18_cmd(
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint folder to write."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    legacy: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    data_root: Path | None = typer.Option(None, help="Shared data folder holding hc18/ (overrides data_dir)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda[:i] or mps."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Train the fetal-head segmenter on HC18 and report held-out Dice and HC error (mm); with head_crops or
    head_polar in the config, a crop or polar refiner of the GA estimator instead."""
    from sonoshift.config import load_config
    from sonoshift.downstream.hc18 import Hc18Config, train_hc18_segmenter

    extra = [f"data_dir={data_root / 'hc18'}"] if data_root is not None else []
    cfg = load_config(Hc18Config, config, [*merge_overrides(overrides, legacy), *extra])
    _claim(out, "segmenter", "", force, "segmenter.json")
    seg, _ = train_hc18_segmenter(cfg, out, device=_device(device))
    v = seg.info.get("validation")
    kind = "polar refiner" if cfg.head_polar else "crop refiner" if cfg.head_crops else "segmenter"
    typer.echo(f"HC18 head {kind} written to {out}" + (" (`sonoshift ga build` measures it behind a first stage)"
                                                       if cfg.head_polar or cfg.head_crops else ""))
    for part, e in seg.info.get("strip_validation", {}).items():
        typer.echo(f"{part} images: outline {e['row_error']:.2f} rows off on {e['strips']} strips around moved "
                   f"reference ellipses (column loss {e['column_loss']:.3f})")
    if v:
        typer.echo(
            f"held-out {v['images']} images: Dice {v['dice_mean']:.3f} (median {v['dice_median']:.3f}), "
            f"HC abs error {v['hc_abs_err_mm_mean']:.2f} mm (median {v['hc_abs_err_mm_median']:.2f}), "
            f"no head found in {v['hc_missed']}"
        )


@segment_app.command("heads")
def heads_cmd(
    segmenter: Path = typer.Option(..., "--segmenter", help="HC18 checkpoint from `sonoshift segment train-hc18`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for heads_*.csv and the predicted masks."),
    data_root: Path = typer.Option(Path("../shared/data"), help="Shared data folder holding fetal_planes_db/."),
    runs: list[Path] = typer.Option([], "--run", help="Translation run(s) of FETAL_PLANES_DB to measure too."),
    plane: str = typer.Option("brain", help="Keep run frames whose plane label contains this ('' = all)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Head proxies (area, ellipse IoU, HC) on FETAL_PLANES_DB trans-thalamic heads per machine, raw and harmonized."""
    import pandas as pd

    from sonoshift.atomic import atomic_write_text
    from sonoshift.downstream.head_eval import evaluate_heads_fpdb, evaluate_heads_run, summarize_heads

    if not (data_root / "fetal_planes_db").is_dir() and not runs:
        raise SonoshiftError(f"data root {data_root} has no fetal_planes_db/ (pass --data-root).")
    _claim(out, "head measurement", "", force, "heads_summary.csv")
    tables = []
    if (data_root / "fetal_planes_db").is_dir():
        tables.append(evaluate_heads_fpdb(data_root, segmenter, out / "heads_raw.csv"))
    for run in runs:
        tables.append(evaluate_heads_run(run, segmenter, out / f"heads_{run.name}.csv", plane_contains=plane))
    summary = summarize_heads(pd.concat(tables, ignore_index=True))
    atomic_write_text(out / "heads_summary.csv", summary.to_csv(index=False))
    cols = ["group", "variant", "images", "head_found_rate", "area_fraction_mean", "ellipse_iou_mean", "hc_frac_mean"]
    _print_table(summary[cols])
    typer.echo(f"per-image tables, masks and heads_summary.csv in {out}")


@segment_app.command("predict")
def predict_cmd(
    segmenter: Path = typer.Argument(..., help="Checkpoint folder."),
    images: list[Path] = typer.Argument(..., help="Image or DICOM files (stills or cine loops), or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the label maps (PNG of class ids)."),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Write one label map per image or DICOM frame (same size as the frame; PNG values are class ids), named after
    the file (<name>.png; a cine loop's frames <name>_<frame:05d>.png)."""
    from collections import Counter

    from sonoshift.atomic import atomic_dir
    from sonoshift.data.frame_inputs import list_frames, read_frame
    from sonoshift.downstream.segmenter import load_segmenter, predict
    from sonoshift.io.images import write_png
    from sonoshift.outputs import settings_key, write_stamp

    refs = list_frames(images)
    names = [f"{r.path.stem}.png" if r.index is None else f"{r.path.stem}_{r.index:05d}.png" for r in refs]
    clash = next((n for n, count in Counter(names).items() if count > 1), None)
    if clash is not None:
        raise SonoshiftError(f"two inputs would both write the label map {clash}: give files with distinct names.")
    files = sorted({r.path for r in refs})
    key = settings_key([str(Path(segmenter).resolve()), [[str(f.resolve()), f.stat().st_mtime_ns] for f in files]])
    if _claim(out, "label-map folder", key, force, ".sonoshift.json") == "reuse":
        typer.echo(f"{out} already holds these label maps; kept them (--force redoes them)")
        return
    seg = load_segmenter(segmenter)
    with atomic_dir(out) as tmp:
        write_stamp(tmp, "label-map folder", key)
        for r, name in zip(refs, names):
            write_png(tmp / name, predict(seg, [read_frame(r)])[0])
    typer.echo(f"{len(refs)} label maps ({', '.join(seg.classes)}) written to {out}")


def register(app: typer.Typer) -> None:
    """Add the ``segment`` sub-app to the main CLI."""
    app.add_typer(segment_app, name="segment")
