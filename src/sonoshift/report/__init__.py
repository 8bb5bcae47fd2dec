"""``sonoshift report``: one HTML page that leads with the verdict (does each method beat the untranslated
frames?), a Figure-4 style qualitative figure, tables (Markdown, CSV, LaTeX), violin plots and a qualitative grid,
from one or more evaluated run folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sonoshift.atomic import atomic_dir
from sonoshift.errors import SonoshiftError
from sonoshift.evaluate import verify_run_split
from sonoshift.config import NonNegInt, PosInt, Validated
from sonoshift.outputs import Stamp, claim_folder, file_digest, settings_key, write_stamp
from sonoshift.report.figure import qualitative_figure
from sonoshift.report.grid import qualitative_grid
from sonoshift.report.html import render_html
from sonoshift.report.load import RunResult, load_runs, metric_order, modes_of
from sonoshift.report.sections import ExtraSection, check_sections, frame_markdown, write_sections
from sonoshift.report.summary import build_summary, summary_markdown
from sonoshift.report.table import build_tables, segmentation_frame, to_csv, to_latex, to_markdown
from sonoshift.report.violin import violins


@dataclass(frozen=True)
class ReportConfig(Validated):
    """What the report draws."""

    figure: bool = True  # the two-row qualitative figure (plain B-mode on one grey scale; outlines) of a typical frame
    figure_panel_px: PosInt = 192  # its panels are upsampled (nearest, integer factor) to about this many pixels
    grid_frames: NonNegInt = 4  # frames (rows) in the qualitative grid (a collapsible section of the page)
    overlays: bool = True  # outline the label map (label_path) and the segmenter's predictions in the grid
    grid_panel_px: PosInt = 256  # grid panels are upsampled (nearest, integer factor) to about this many pixels
    violins: bool = True
    violin_metrics: tuple[str, ...] = ()  # metrics that get violin plots; empty = every metric column
    intervals: bool = True  # a table with a 95% bootstrap interval over patients and the texture check per method


def make_report(
    run_dirs: list[str | Path],
    out: str | Path,
    cfg: ReportConfig = ReportConfig(),
    extra_sections: list[ExtraSection] | tuple[ExtraSection, ...] = (),
    *,
    force: bool = False,
) -> Path:
    """Write table.md, table.csv, table.tex, violins/<mode>_<metric>.png, figure.png, grid.png and index.html
    into ``out`` (plus segmentation.csv when runs carry the downstream ``segmentation.csv``).

    ``run_dirs`` are run folders already scored by ``sonoshift evaluate``; rows are named by each run's method
    and configuration. ``extra_sections`` are shown after the tables, in order; their images and tables
    are also copied to ``out/sections/``. ``out`` follows the output policy (sonoshift.outputs): an existing
    report of the same runs and settings is reused, ``force`` replaces an earlier report atomically, anything
    else at ``out`` is refused. Returns ``out``.
    """
    runs: list[RunResult] = load_runs(list(run_dirs))
    for r in runs:  # leakage checked again at this read: splits edited since `evaluate` are caught here too
        if (r.run_dir / "run.json").is_file() and verify_run_split(r.run_dir) and not r.meta.get("leakage"):
            raise SonoshiftError(f"run {r.run_dir} shares patients with its model's training split but its metrics "
                                 "do not say so; evaluate it again.")
    extra = list(extra_sections)
    check_sections(extra)
    key = _report_key(runs, cfg, extra)
    if claim_folder(out, "report", key, force=force, legacy=_legacy_report) == "reuse":
        return Path(out)
    tables = build_tables(runs)
    summary = build_summary(runs, tables)
    with atomic_dir(out) as tmp:
        write_stamp(tmp, "report", key)
        (tmp / "table.md").write_text(to_markdown(tables, runs, summary_markdown(summary)), encoding="utf-8")
        (tmp / "table.csv").write_text(to_csv(tables), encoding="utf-8")
        (tmp / "table.tex").write_text(to_latex(tables, runs), encoding="utf-8")
        seg = segmentation_frame(runs)
        if not seg.empty:
            (tmp / "segmentation.csv").write_text(seg.to_csv(index=False, lineterminator="\n"), encoding="utf-8")
        metrics = [m for m in metric_order(runs) if not cfg.violin_metrics or m in cfg.violin_metrics]
        figs = violins(runs, modes_of(runs), metrics, tmp) if cfg.violins else {}
        grid = (qualitative_grid(runs, tmp / "grid.png", cfg.grid_frames, cfg.overlays, cfg.grid_panel_px)
                if cfg.grid_frames > 0 else None)  # fmt: skip
        figure = (qualitative_figure(runs, tmp / "figure.png", cfg.overlays, cfg.figure_panel_px)
                  if cfg.figure else None)  # fmt: skip
        if cfg.intervals:
            intervals = _interval_section(runs)
            for section in intervals:
                (tmp / "table_ci.md").write_text(frame_markdown(section.table) + "\n" + section.caption + "\n",
                                                 encoding="utf-8")
            extra = [*intervals, *extra]
        copied = write_sections(extra, tmp / "sections")
        page = render_html(runs, tables, figs, grid, list(zip(extra, copied)), summary, figure)
        (tmp / "index.html").write_text(page, encoding="utf-8")
    return Path(out)


def _interval_section(runs: list[RunResult]) -> list[ExtraSection]:
    """The results with a patient bootstrap interval and the texture check, against the ground truth when the runs
    have it (else their first reference mode); nothing when no run has patient ids."""
    from sonoshift.metrics.ci_table import ci_frame, ci_note

    modes = modes_of(runs)
    if not modes:
        return []
    reference = "gt" if "gt" in modes else modes[0]
    frame, n_patients = ci_frame([r.run_dir for r in runs], reference)
    if frame.empty:
        return []
    return [ExtraSection(title=f"Intervals over patients and the texture check ({reference})", table=frame,
                         caption=ci_note(n_patients, reference) + " The texture column is the mean distance between "
                         "the radially averaged log power spectra of output and reference inside the field of view.")]


def _report_key(runs: list[RunResult], cfg: ReportConfig, extra: list[ExtraSection]) -> str:
    files = ("metrics.csv", "metrics.json", "metrics_dataset.csv", "segmentation.csv", "planes.csv", "ga.csv")
    return settings_key({
        "config": repr(cfg),
        "runs": [[str(r.run_dir.resolve()), {f: file_digest(r.run_dir / f) for f in files if (r.run_dir / f).is_file()}]
                 for r in runs],
        "sections": [[s.title, s.caption, [str(p) for p in s.images],
                      None if s.table is None else s.table.to_csv()] for s in extra],
    })


def _legacy_report(out: Path) -> Stamp | None:
    """A report folder written before stamps existed."""
    return Stamp("report", None) if (out / "index.html").is_file() and (out / "table.md").is_file() else None


__all__ = ["ExtraSection", "ReportConfig", "make_report"]
