"""Score a plane classifier on labelled frames: per-frame table, summary per domain and overall, confusion PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sonoshift.atomic import atomic_file, atomic_write_text
from sonoshift.judges.plane.checkpoint import PlaneClassifier
from sonoshift.judges.plane.data import Samples, encode, to_input
from sonoshift.judges.plane.scores import summarize
from sonoshift.judges.plane.train import predict_proba

ALL = "all"


def classify_samples(clf: PlaneClassifier, samples: Samples, *, strict: bool = True) -> pd.DataFrame:
    """One row per sample: path, domain, patient_id, label, label_id, pred, confidence, p_<class>...

    ``strict``: a label the classifier does not know is an error; otherwise such rows get label_id -1."""
    y = encode(samples.labels, clf.classes, strict=strict)
    probs = predict_proba(clf.model, to_input(samples.frames))
    df = pd.DataFrame({"path": samples.paths, "domain": samples.domains, "patient_id": samples.patients,
                       "label": samples.labels, "label_id": y})
    df["pred"] = [clf.classes[i] for i in probs.argmax(1)] if len(df) else []
    df["confidence"] = probs.max(1) if len(df) else []
    for i, c in enumerate(clf.classes):
        df[f"p_{c}"] = probs[:, i] if len(df) else []
    return df


def probs_of(table: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    return table[[f"p_{c}" for c in classes]].to_numpy(dtype=np.float64)


def summarize_table(table: pd.DataFrame, classes: Sequence[str], by: str = "domain") -> pd.DataFrame:
    """Rows: each value of ``by`` then ``all``; columns n, accuracy, macro_f1, ece, recall_<class>."""
    table = table[table["label_id"] >= 0]
    groups = [(str(k), g) for k, g in table.groupby(by, sort=True)] + [(ALL, table)]
    recs = []
    for name, g in groups:
        s = summarize(g["label_id"].to_numpy(), probs_of(g, classes), classes)
        s.pop("confusion")
        recs.append({by: name, **s})
    return pd.DataFrame.from_records(recs)


def confusion_png(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    """Confusion matrix (rows true, columns predicted) as a PNG: counts, colours = row-normalized recall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * n, 1.0 + 0.8 * n), dpi=110)
    ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black")
    short = [c.replace("Fetal ", "").replace("Maternal ", "m. ") for c in classes]
    ax.set_xticks(range(n), short, rotation=35, ha="right")
    ax.set_yticks(range(n), short)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def write_evaluation(table: pd.DataFrame, classes: Sequence[str], out: str | Path, title: str = "") -> pd.DataFrame:
    """Write ``out/predictions.csv``, ``out/summary.csv`` and ``out/confusion.png``; returns the summary."""
    out = Path(out)
    summary = summarize_table(table, classes)
    known = table[table["label_id"] >= 0]
    cm = summarize(known["label_id"].to_numpy(), probs_of(known, classes), classes)["confusion"]
    atomic_write_text(out / "predictions.csv", table.to_csv(index=False))
    atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
    confusion_png(np.array(cm), classes, out / "confusion.png", title)
    return summary
