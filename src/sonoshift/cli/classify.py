"""``sonoshift classify ...``: the fetal plane classifier (train, evaluate, predict, adapt, cv, spain-africa)."""

from __future__ import annotations

from pathlib import Path

import typer

from sonoshift.cli.overrides import OVERRIDES_HELP, SET_HELP, merge_overrides
from sonoshift.errors import SonoshiftError

classify_app = typer.Typer(
    help="Plane classifier: train on a prepared labelled dataset, evaluate per domain, predict image / DICOM files.",
    no_args_is_help=True,
)

CONFIG_HELP = "YAML config (ClassifierConfig fields); defaults are the CPU settings."


def _show(df) -> None:
    cols = [c for c in ("variant", "domain", "n", "accuracy", "macro_f1", "ece") if c in df.columns]
    typer.echo(df[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _config(config: Path | None, overrides: list[str]):
    from sonoshift.config import load_config
    from sonoshift.judges.plane.train import ClassifierConfig

    return load_config(ClassifierConfig, config, overrides)


@classify_app.command("train")
def train_cmd(
    dataset: Path = typer.Argument(..., help="Prepared dataset with a plane label (output of `sonoshift prepare`)."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Classifier folder to write."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    legacy: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
    device: str = typer.Option("cpu", help="cpu, cuda[:i] or mps."),
) -> None:
    """Train on the train split, early-stop on validation macro-F1, write a self-describing checkpoint."""
    from sonoshift.judges.plane.api import train_on_dataset

    clf = train_on_dataset(dataset, out, _config(config, merge_overrides(overrides, legacy)), device=device)
    v = clf.info.get("validation")
    typer.echo(f"plane classifier ({', '.join(clf.classes)}) written to {out}")
    if v:
        typer.echo(f"validation: accuracy {v['accuracy']:.3f}, macro-F1 {v['macro_f1']:.3f}, ECE {v['ece']:.3f} "
                   f"(best step {clf.info['best_step']} of {clf.info['steps_run']})")


@classify_app.command("evaluate")
def evaluate_cmd(
    classifier: Path = typer.Argument(..., help="Classifier folder from `sonoshift classify train`."),
    dataset: Path = typer.Argument(..., help="Prepared dataset to score."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for predictions.csv, summary.csv, confusion.png."),
    split: str = typer.Option("test", help="Split to score: train, val or test."),
    translator: Path | None = typer.Option(None, "--translator", help="Harmonize the frames with this run first."),
    drop_unknown: bool = typer.Option(False, help="Skip frames whose label the classifier does not know."),
) -> None:
    """Accuracy, macro-F1, per-class recall and ECE per domain and overall, plus a confusion-matrix PNG."""
    from sonoshift.judges.plane.api import evaluate_on_dataset

    _show(evaluate_on_dataset(classifier, dataset, out, split=split, translator=translator,
                              drop_unknown=drop_unknown))
    typer.echo(f"tables and confusion.png in {out}")


@classify_app.command("predict")
def predict_cmd(
    classifier: Path = typer.Argument(..., help="Classifier folder."),
    images: list[Path] = typer.Argument(..., help="Image or DICOM files (stills or cine loops), or folders of them."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write."),
    crop: bool = typer.Option(True, help="Crop the field of view as `prepare` does (off for prepared frames)."),
    adapt: bool = typer.Option(False, help="Re-normalize the classifier on these frames first (AdaBN; at least 8 "
                                           "frames of one new scanner; see `classify adapt`)."),
    zooms: str = typer.Option("", help="With --adapt: comma-separated centred zooms, e.g. 1,1.25,1.5 (a test-time "
                                       "zoom ensemble re-normalized at each zoom; see `classify adapt`)."),
    force: bool = typer.Option(False, "--force", help="Replace this command's own earlier CSV made with other "
                                                      "settings (a file it did not write is never replaced)."),
) -> None:
    """Predicted plane, confidence and class probabilities per image or DICOM frame, as a CSV (column frame: a cine
    loop's frame index, empty for a still)."""
    from sonoshift.judges.plane.api import predict_files

    df = predict_files(classifier, images, out, crop=crop, adapt=adapt, zooms=_zooms(zooms), force=force)
    typer.echo(f"{len(df)} predictions written to {out}")


@classify_app.command("adapt")
def adapt_cmd(
    classifier: Path = typer.Argument(..., help="Classifier folder to adapt (it is not changed)."),
    images: list[Path] = typer.Argument(..., help="Unlabelled image or DICOM files or folders (searched "
                                                  "recursively) of the new scanner or centre."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the adapted classifier."),
    crop: bool = typer.Option(True, help="Crop the field of view as `prepare` does (off for prepared frames)."),
    zooms: str = typer.Option("", help="Comma-separated centred zooms: a test-time zoom ensemble re-normalized at "
                                       "each zoom; 1,1.25,1.5 for probes with a wider field of view, 0.8,1,1.25 when "
                                       "the direction is unknown (docs/judges.md)."),
) -> None:
    """Re-normalize the classifier for a new domain from unlabelled frames (AdaBN: BatchNorm statistics only)."""
    from sonoshift.judges.plane.adapt import adapt_files

    clf = adapt_files(classifier, images, out, crop=crop, zooms=_zooms(zooms))
    at = f" at zooms {', '.join(f'{z:g}' for z in clf.info['zooms'])}" if zooms else ""
    typer.echo(f"adapted on {clf.info['adapted']['frames']} unlabelled frames{at}; written to {out}")


def _zooms(text: str) -> tuple[float, ...] | None:
    if not text.strip():
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise SonoshiftError(f"--zooms must be comma-separated numbers such as 1,1.25,1.5, got {text!r}.") from None


@classify_app.command("cv")
def cv_cmd(
    dataset: Path = typer.Argument(..., help="Prepared dataset (all its splits are pooled, then folded by patient)."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for pooled predictions, summary, folds.csv."),
    folds: int = typer.Option(5, help="Number of patient-wise folds."),
    seed: int = typer.Option(0, help="Fold seed."),
    config: Path | None = typer.Option(None, "--config", "-c", help=CONFIG_HELP),
    legacy: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
) -> None:
    """In-domain patient-wise K-fold cross-validation: pooled accuracy / macro-F1 per domain and overall."""
    from sonoshift.judges.plane.cv import cross_validate

    cfg = _config(config, merge_overrides(overrides, legacy))
    summary, per_fold = cross_validate(dataset, out, cfg, k=folds, seed=seed)
    _show(summary)
    typer.echo(f"per fold: accuracy {per_fold['accuracy'].mean():.3f} +- {per_fold['accuracy'].std(ddof=0):.3f}, "
               f"macro-F1 {per_fold['macro_f1'].mean():.3f} +- {per_fold['macro_f1'].std(ddof=0):.3f}")


@classify_app.command("spain-africa")
def spain_africa_cmd(
    source: Path = typer.Argument(..., help="Prepared FETAL_PLANES_DB (`prepare --public fetal_planes_db`)."),
    target: Path = typer.Argument(..., help="Prepared African planes (`prepare --public african_planes`)."),
    overrides: list[str] = typer.Argument(None, help=OVERRIDES_HELP + " Keys start with classifier."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    translator: Path | None = typer.Option(
        None, "--translator", help="A translator run africa -> spain: also score the test frames harmonized by it; "
        "a CycleGAN also trains a classifier on Spanish + copies made by its reverse generator (`translated`)."),
    classifier: Path | None = typer.Option(None, "--classifier", help="Use this classifier instead of training."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML with a CrossDomainConfig."),
    legacy: list[str] = typer.Option([], "--set", "-s", help=SET_HELP),
) -> None:
    """Train on Spanish FETAL_PLANES_DB labels only (four shared planes), test on the African test part: raw,
    re-normalized on the unlabelled African adaptation part (adapted; `adapt=false` to skip), as a zoom ensemble,
    harmonized, and trained with translated copies (`translated=false` to skip)."""
    from sonoshift.config import load_config
    from sonoshift.judges.plane.cross_domain import CrossDomainConfig, spain_to_africa

    cfg = load_config(CrossDomainConfig, config, merge_overrides(overrides, legacy))
    _show(spain_to_africa(source, target, out, cfg, translator=translator, classifier=classifier))
    typer.echo(f"cross_domain.csv, per-variant tables and confusion PNGs in {out}")


def register(app: typer.Typer) -> None:
    """Add the ``classify`` sub-app to the main CLI."""
    app.add_typer(classify_app, name="classify")
