"""The diffusion translators' anchors on real data (issue 12): do they keep each frame's structure and move it
toward the target scanner, compared with histogram matching? No learning and no simulator: an untrained anchored
DDGAN / cascade returns exactly its anchor, so these numbers are where a trained one starts.

    python bench/real_anchors.py --data-root ../shared/data --out runs/real_anchors [--plane-classifier RUN]

Prepares the two studies of `sonoshift demo --real` (FETAL_PLANES_DB Aloka -> Voluson E6; the African centres ->
Malawi, adaptation part only) at 64 px under OUT (reused when present), fits each anchor on the train split
(histogram matching: target frames; affine / depth-affine: source and target frames), and scores the
source frames of the val and test splits (the real sets are small: tens of frames): SSIM to their own source
inside the field of view (structure kept; the issue asks >= 0.7), dataset-level BC of the grey-level histograms to the target domain's val + test frames, and KID to
those frames in a feature space (the seeded random-conv extractor of ``sonoshift.metrics.fid``; with
``--plane-classifier``, also that classifier's features, an ultrasound embedding). Writes OUT/real_anchors.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sonoshift.config import load_config  # noqa: E402


def prepared(name: str, out: Path, data_root: Path) -> tuple[Path, str, str]:
    """The prepared study ``name`` ("fpdb" or "african") of the real run, made under OUT when missing."""
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.pipeline.real import OTHER_CENTRES, RealConfig, _african_spec, _fpdb_spec

    cfg = RealConfig(data_root=str(data_root))
    source, target, spec = {"fpdb": (cfg.fpdb_source, cfg.fpdb_target, _fpdb_spec),
                            "african": (OTHER_CENTRES, cfg.african_target, _african_spec)}[name]
    data = out / name / "data"
    if not (data / "dataset.json").is_file():
        prep = PrepareConfig(resize=ResizeConfig(size=cfg.study.size), source_domain=source, target_domain=target)
        prepare(spec(cfg, data_root), data, prep, progress=False)
    return data, source, target


def anchors(data: Path, source: str, target: str) -> dict[str, object]:
    from sonoshift.baselines import fit_histogram_match
    from sonoshift.inference.translate import Untranslated
    from sonoshift.methods.ddgan import DDGANConfig, fitted_anchor, training_data

    out: dict[str, object] = {"untranslated": Untranslated(source, target, (64, 64)),
                              "histogram_match": fit_histogram_match(data, source, target)}
    for kind in ("affine", "depth_affine"):
        cfg = load_config(DDGANConfig, ROOT / "configs" / "cpu" / "ddgan.yaml",
                          ["cyclegan=unused", f"anchor={kind}", f"data.source_domain={source}",
                           f"data.target_domain={target}", "data.size=64"])
        out[kind] = fitted_anchor(cfg, training_data(data, cfg))
    return out


def score(data: Path, source: str, target: str, extractors: dict[str, torch.nn.Module]) -> list[dict[str, object]]:
    from sonoshift.data.cache import load_cache
    from sonoshift.metrics import pair_metrics
    from sonoshift.metrics.fid import extract_features, kid_from_features
    from sonoshift.metrics.histogram import bc_dataset

    x, y, m = (np.concatenate([np.asarray(load_cache(data, sp, d, k)) for sp in ("val", "test")])
               for d, k in ((source, None), (target, None), (source, "mask")))
    xs, ys = (torch.from_numpy(a.astype(np.float32) / 255)[:, None] for a in (x, y))
    mask = torch.from_numpy(m > 0)[:, None]
    feats = {k: extract_features(ys, e) for k, e in extractors.items()}
    rows = []
    for name, tr in anchors(data, source, target).items():
        with torch.no_grad():
            h = ((tr(xs * 2 - 1) + 1) / 2).clamp(0, 1)
        h = (h * 255).round() / 255  # as harmonize writes uint8 frames
        row: dict[str, object] = {"row": name, "n": len(x), "n_target": len(y),
                                  "ssim_src": float(pair_metrics(h, xs, mask)["ssim"].mean()),
                                  "bc_target": bc_dataset(h, ys)}
        for k, e in extractors.items():
            row[f"kid_{k}"] = kid_from_features(extract_features(h, e), feats[k])[0]
        rows.append(row)
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/real_anchors"))
    ap.add_argument("--plane-classifier", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sonoshift.metrics.fid import default_extractor

    extractors = {"randconv": default_extractor()[0].eval()}
    if args.plane_classifier is not None:
        from sonoshift.judges.plane.embedding import load_plane_extractor

        extractors["plane"] = load_plane_extractor(args.plane_classifier)[0].eval()
    lines = ["Anchors on real val + test frames (64 px): SSIM to the own source frame (in the field of view), "
             "dataset BC and KID to the target domain's val + test frames (lower KID = closer; few frames: noisy).", ""]
    for study in ("fpdb", "african"):
        data, source, target = prepared(study, args.out, args.data_root)
        rows = score(data, source, target, extractors)
        kid = [k for k in rows[0] if k.startswith("kid_")]
        lines += [f"### {study}: {source} -> {target} ({rows[0]['n']} source, {rows[0]['n_target']} target frames)",
                  "", "| anchor | SSIM to source | BC to target | " + " | ".join(kid) + " |",
                  "|---|---|---|" + "---|" * len(kid)]
        lines += [f"| {r['row']} | {r['ssim_src']:.3f} | {r['bc_target']:.3f} | "
                  + " | ".join(f"{r[k]:.4f}" for k in kid) + " |" for r in rows]
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_anchors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
