"""The demo's downstream judges: a plane classifier and a GA estimator, frozen, scoring every translation run.

Both are trained on the target profile's frames only (what a cart-trained model is) and never change after:
- the plane classifier (``sonoshift.judges.plane``) on the target domain's train split of the prepared data,
  early-stopped on its val split;
- the GA estimator (``sonoshift.judges.ga.estimator``) is the demo's target-domain segmenter (its ``fetal_head``
  class) + the ellipse fit: head segmentation -> HC (mm, the simulator's pixel size) -> GA by Hadlock. Nothing
  extra is trained; on the simulator the head is its anatomy, so the ellipse needs no outline calibration.

For every run each test frame is judged three ways, as the downstream segmentation is (``evaluate_seg``): the
source frame as it is (``source``), its harmonized output (``harmonized``) and the simulator's ground truth in
the target profile (``ground_truth``, the ceiling). ``RUN/planes.csv`` holds one row per frame and variant
(truth, pred, confidence, correct); ``RUN/ga.csv`` one row per head-plane frame and variant (true GA, HC, GA by
Hadlock, |error| in days, head found). The report reads both (``report.downstream``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonoshift.atomic import atomic_write_text
from sonoshift.config import NonNegInt, PosInt, Validated, load_config
from sonoshift.errors import SonoshiftError

PLANES_FILE, GA_FILE = "planes.csv", "ga.csv"
VARIANTS = (("source", "source_path"), ("harmonized", "output_path"), ("ground_truth", "gt_path"))


@dataclasses.dataclass(frozen=True)
class JudgesConfig(Validated):
    """The demo's judges. enabled: train and run them; plane_config: the classifier's YAML; plane_image_size:
    its input side in px (the demo's frames are 64 px: no point in upsampling); steps_plane: at most this many
    steps (0 = the config's; early stopping usually ends sooner); ga_plane: the plane whose frames the GA
    estimator measures."""

    enabled: bool = True
    plane_config: str = "configs/cpu/plane_classifier.yaml"
    plane_image_size: PosInt = 64
    steps_plane: NonNegInt = 0
    ga_plane: str = "head"


def train_plane_judge(
    data: Path, out: Path, cfg: JudgesConfig, *, domain: str, seed: int, progress: bool = True
) -> dict[str, Any]:
    """Train the plane classifier on ``domain``'s frames of ``data`` (train split; val split early-stops) into
    ``out``; returns {"checkpoint", "classes", "validation"} (JSON-able)."""
    from sonoshift.judges.plane.api import train_on_dataset
    from sonoshift.judges.plane.train import ClassifierConfig
    from sonoshift.pipeline.study import config_path

    overrides = [f"domains=[{domain}]", f"image_size={cfg.plane_image_size}", f"train.seed={seed}"]
    if cfg.steps_plane:
        overrides.append(f"train.steps={cfg.steps_plane}")
    ccfg = load_config(ClassifierConfig, config_path(cfg.plane_config), overrides)
    clf = train_on_dataset(data, out, ccfg, progress=progress)
    val = clf.info.get("validation", {})
    return {"checkpoint": str(out), "classes": list(clf.classes),
            "validation": {k: val.get(k) for k in ("n", "accuracy", "macro_f1")}}


def _manifest(data: Path) -> dict[str, dict[str, str]]:
    """Manifest rows of every split of ``data`` by frame path (relative to ``data``)."""
    from sonoshift.data.manifests import read_manifest

    rows: dict[str, dict[str, str]] = {}
    for split in ("train", "val", "test"):
        man = data / f"manifest_{split}.csv"
        if man.is_file():
            rows.update({r["path"]: r for r in read_manifest(man)})
    return rows


@dataclasses.dataclass
class RunJudges:
    """The frozen judges and a per-image cache (source and ground-truth frames are the same in every run)."""

    classifier: Any  # judges.plane.checkpoint.PlaneClassifier
    estimator: Any  # judges.ga.estimator.GaEstimator
    ga_plane: str = "head"
    cache: dict[tuple[str, str], Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, classifier: str | Path, segmenter: str | Path, ga_plane: str = "head") -> RunJudges:
        """The classifier folder and the target-domain segmenter (its ``fetal_head`` class measures the head)."""
        from sonoshift.downstream.segmenter import load_segmenter
        from sonoshift.judges.ga.estimator import GaEstimator
        from sonoshift.judges.plane.checkpoint import load_classifier

        seg = load_segmenter(segmenter)
        if not any(c in seg.classes for c in ("head", "fetal_head")):
            raise SonoshiftError(f"segmenter {segmenter} has no head class (classes: {', '.join(seg.classes)}).")
        return cls(load_classifier(classifier), GaEstimator(seg, 0.0, True), ga_plane)

    def planes(self, paths: list[Path]) -> list[tuple[str, float]]:
        """(predicted plane, confidence) per image file."""
        import cv2

        from sonoshift.io.images import read_gray
        from sonoshift.judges.plane.data import to_input
        from sonoshift.judges.plane.train import predict_proba

        todo = [p for p in dict.fromkeys(paths) if ("plane", str(p)) not in self.cache]
        if todo:
            s = self.classifier.image_size
            frames = np.stack([cv2.resize(read_gray(p), (s, s), interpolation=cv2.INTER_AREA) for p in todo])
            probs = predict_proba(self.classifier.model, to_input(frames))
            for p, pr in zip(todo, probs):
                self.cache[("plane", str(p))] = (self.classifier.classes[int(pr.argmax())], float(pr.max()))
        return [self.cache[("plane", str(p))] for p in paths]

    def ga(self, paths: list[Path], pixel_mm: list[float]) -> list[dict[str, Any]]:
        """The GA estimator's measurement (head_found, hc_mm, ga_hadlock_weeks) per image file."""
        from sonoshift.io.images import read_gray
        from sonoshift.judges.ga.estimator import measure

        todo = [(p, px) for p, px in dict.fromkeys(zip(paths, pixel_mm)) if ("ga", str(p)) not in self.cache]
        if todo:
            m = measure(self.estimator, [read_gray(p) for p, _ in todo], [px for _, px in todo],
                        names=[str(p) for p, _ in todo])
            for (p, _), rec in zip(todo, m.to_dict("records")):
                self.cache[("ga", str(p))] = {k: rec[k] for k in ("head_found", "hc_mm", "ga_hadlock_weeks")}
        return [self.cache[("ga", str(p))] for p in paths]


def judge_run(run_dir: str | Path, judges: RunJudges, data: str | Path) -> dict[str, Any]:
    """Write ``RUN/planes.csv`` and ``RUN/ga.csv`` for the translation run ``run_dir`` of the prepared ``data``
    (its manifests give each source frame's plane, GA and pixel size); return their summary per variant."""
    from sonoshift.downstream.evaluate_seg import read_run
    from sonoshift.runs import resolve

    run = Path(run_dir)
    meta, df, root = read_run(run)
    manifest = _manifest(Path(data))
    planes, ga = [], []
    for variant, col in VARIANTS:
        if col not in df.columns:
            continue
        frames = []
        for _, row in df.iterrows():
            info = manifest.get(str(row["source_path"]))
            if info is None or pd.isna(row[col]) or not str(row[col]):
                continue
            path = run / str(row[col]) if col == "output_path" else resolve(row[col], root)
            if path is not None:
                frames.append((row, info, path))
        if not frames:
            continue
        ids = lambda row, info: {"method": meta.get("method", run.name), "variant": variant,  # noqa: E731
                                 "patient_id": row.get("patient_id", ""), "video_id": row.get("video_id", ""),
                                 "frame_index": row.get("frame_index", "")}
        labelled = [(r, i, p) for r, i, p in frames if (i.get("plane") or "").strip()]
        for (row, info, _), (pred, conf) in zip(labelled, judges.planes([p for *_, p in labelled])):
            truth = info["plane"].strip()
            planes.append({**ids(row, info), "truth": truth, "pred": pred, "confidence": conf,
                           "correct": int(pred == truth)})
        heads = [(r, i, p) for r, i, p in frames if (i.get("plane") or "").strip() == judges.ga_plane]
        for r, i, p in heads:
            if not i.get("pixel_size_mm") or not i.get("ga_weeks"):
                raise SonoshiftError(f"frame {i['path']} has no pixel size or GA (re-run `sonoshift simulate` and "
                                     "`prepare`).")
        meas = judges.ga([p for *_, p in heads], [float(i["pixel_size_mm"]) for _, i, _ in heads])
        for (row, info, _), m in zip(heads, meas):
            true_ga = float(info["ga_weeks"])
            err = (m["ga_hadlock_weeks"] - true_ga) * 7 if m["head_found"] else math.nan
            ga.append({**ids(row, info), "ga_weeks": true_ga, "head_found": int(bool(m["head_found"])),
                       "hc_mm": m["hc_mm"], "ga_hadlock_weeks": m["ga_hadlock_weeks"], "ga_error_days": err,
                       "ga_abs_error_days": abs(err)})
    if not planes:
        raise SonoshiftError(f"translation run {run} has no test frame with a plane label to judge.")
    tp, tg = pd.DataFrame(planes), pd.DataFrame(ga)
    atomic_write_text(run / PLANES_FILE, tp.to_csv(index=False))
    atomic_write_text(run / GA_FILE, tg.to_csv(index=False))
    return summarize_judges(tp, tg)


def summarize_judges(planes: pd.DataFrame, ga: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per variant: frames, plane accuracy and macro-F1; head frames, head-found rate, mean |GA error| (days)."""
    from sonoshift.report.downstream import macro_f1_of

    out: dict[str, dict[str, float]] = {}
    for variant, g in planes.groupby("variant", sort=False):
        out[str(variant)] = {"frames": int(len(g)), "plane_accuracy": float(g["correct"].mean()),
                             "plane_macro_f1": macro_f1_of(g)}
    for variant, g in (ga.groupby("variant", sort=False) if not ga.empty else ()):
        e = g["ga_abs_error_days"].to_numpy(dtype=float)
        out.setdefault(str(variant), {}).update({
            "head_frames": int(len(g)), "head_found_rate": float(g["head_found"].mean()),
            "ga_abs_error_days": float(np.nanmean(e)) if np.isfinite(e).any() else math.nan})
    return out


def adapted_reference(classifier: str | Path, data: str | Path, source: str) -> dict[str, Any]:
    """The frozen plane judge on the ``source`` domain's test frames of ``data``, raw and re-normalized on that
    domain's **training-split** frames without their labels (AdaBN, ``judges.plane.adapt``): the score a
    harmonizer should beat, since re-normalizing the judge needs neither a translator nor labels; also the judge as a
    test-time zoom ensemble re-normalized at each zoom (``judges.plane.zoom``: ``adapted_zoomed``)."""
    from sonoshift.judges.plane.adapt import adapt_classifier, zoom_classifier
    from sonoshift.judges.plane.checkpoint import load_classifier
    from sonoshift.judges.plane.data import load_samples
    from sonoshift.judges.plane.evaluate import classify_samples
    from sonoshift.judges.plane.zoom import DEFAULT_ZOOMS
    from sonoshift.report.downstream import macro_f1_of

    clf = load_classifier(classifier)
    test = load_samples(data, ["test"], clf.image_size, label=clf.label, domains=[source])
    test = test.subset([l in clf.classes for l in test.labels])
    unlabelled = load_samples(data, ["train"], clf.image_size, label=clf.label, domains=[source])
    if not len(test):
        raise SonoshiftError(f"{data} has no {source} test frame with a plane label to judge.")
    out: dict[str, Any] = {"adapted_on_frames": int(len(unlabelled)), "test_frames": int(len(test))}
    what = f"{source} training split, labels not read"
    adapted = adapt_classifier(clf, unlabelled.frames, what)
    zoomed = zoom_classifier(clf, DEFAULT_ZOOMS, unlabelled.frames, what)
    out["zooms"] = list(DEFAULT_ZOOMS)
    for name, model in (("raw", clf), ("adapted", adapted), ("adapted_zoomed", zoomed)):
        t = classify_samples(model, test).rename(columns={"label": "truth"})
        out[name] = {"plane_accuracy": float((t["truth"] == t["pred"]).mean()),
                     "plane_macro_f1": macro_f1_of(t)}
    return out


def adapted_section(judged: dict[str, dict[str, dict[str, float]]], reference: dict[str, Any]) -> Any:
    """The report section that sets every run's harmonized plane scores beside the judge re-normalized on
    unlabelled source frames (``adapted_reference``), raw and ground truth."""
    from sonoshift.report import ExtraSection

    bar = reference["adapted"]
    rows = [{"input": "source frames, raw", **reference["raw"]},
            {"input": f"source frames, judge re-normalized on {reference['adapted_on_frames']} unlabelled source "
                     "frames (AdaBN)", **bar}]
    zoomed = reference.get("adapted_zoomed")  # absent in a reference written before session 20
    if zoomed:
        zooms = ", ".join(f"{z:g}" for z in reference.get("zooms", []))
        rows.append({"input": f"source frames, judge as a zoom ensemble ({zooms}) re-normalized at each zoom",
                     **zoomed})
    gt = None
    for method, v in judged.items():
        if "harmonized" in v and method != "untranslated":
            rows.append({"input": f"harmonized by {method}", **{k: v["harmonized"].get(k, math.nan)
                                                               for k in ("plane_accuracy", "plane_macro_f1")}})
        gt = gt or v.get("ground_truth")
    if gt:
        rows.append({"input": "ground truth (ceiling)", "plane_accuracy": gt.get("plane_accuracy", math.nan),
                     "plane_macro_f1": gt.get("plane_macro_f1", math.nan)})
    table = pd.DataFrame(rows)
    harmonized = table["input"].str.startswith("harmonized by ")

    def beats(row: dict[str, float]) -> list[str]:  # per harmonized run: is its macro-F1 above this row's?
        return [("yes" if f > row["plane_macro_f1"] else "no") if h else ""
                for h, f in zip(harmonized, table["plane_macro_f1"])]

    table["beats the re-normalized judge (macro-F1)"] = beats(bar)
    if zoomed:
        table["beats the zoom ensemble (macro-F1)"] = beats(zoomed)
    caption = ("The frozen plane judge (trained on target-profile frames) on the source test frames, raw and with its "
               "BatchNorm statistics re-estimated on the source domain's training frames, labels not read (AdaBN: no "
               "translator, no label). A harmonizer that does not beat this row gives the judge less than "
               "re-normalizing it would. The zoom-ensemble row also averages the judge over centred zooms, each "
               "re-normalized for its zoom (for a probe whose field of view differs).")
    return ExtraSection(title="Plane judge: harmonizers against re-normalizing the judge", caption=caption,
                        table=table.rename(columns={"plane_accuracy": "accuracy", "plane_macro_f1": "macro-F1"}))

