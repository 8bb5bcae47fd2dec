"""The diffusion translators and their anchors on real data (issue 12): do they keep each frame's structure and move
it toward the target scanner, compared with histogram matching?

    python bench/real_anchors.py --data-root ../shared/data --out runs/real_anchors \
        [--plane-classifier NAME=RUN ...] [--train [--steps cyclegan=800,ddgan=250]] [--boot 500] \
        [--variant NAME=ddgan:KEY=VALUE[;KEY=VALUE] ...] [--african-eval test|adaptation]

Prepares the two studies of `sonoshift demo --real` at 64 px under OUT (reused when present): FETAL_PLANES_DB
Aloka -> Voluson E6, and the African centres -> Malawi. Fits each anchor on the train split (histogram matching:
target frames; affine / depth-affine: source and target frames) and, with ``--train``, trains the CPU configs'
CycleGAN, anchored DDGAN and anchored cascade on the train split (``--steps``; default the budgets of `sonoshift
demo --real`: 800 / 250 / 250; under OUT/<study>/models, reused when finished). Scores:
- FETAL_PLANES_DB: the Aloka frames of the val and test splits, against the Voluson E6 frames of those splits.
- African: the translators see the adaptation part only (the African rule, ``judges.plane.african``); they are
  scored on the source-centre frames of the African *test part* (never trained, tuned or selected on), against the
  Malawi frames of the test part.
Per row: SSIM to the own source inside the field of view (structure kept; the issue asks >= 0.7), dataset-level BC
of the grey-level histograms to the target frames, and KID to the target frames in each feature space (the seeded
random-conv extractor of ``sonoshift.metrics.fid``; ``--plane-classifier NAME=RUN``: that plane classifier's
penultimate features, an ultrasound embedding), with a 95% bootstrap interval (source and target frames resampled
with replacement) and the paired difference to histogram matching (same resamples for both rows: "closer than
histogram matching" holds when its interval is below 0). ``--variant``: one more translator row, a method trained
with its own overrides (under OUT/<study>/models/NAME). ``--african-eval adaptation``: score the African study on
frames of the adaptation part that no translator trained on instead (the set to choose a design on; the test part
is for the one look at the end). Writes OUT/real_anchors.md and OUT/real_anchors.csv.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sonoshift.config import load_config  # noqa: E402
from sonoshift.errors import exit_on_error  # noqa: E402

STEPS = {"cyclegan": 800, "ddgan": 250, "cascade": 250}  # the budgets of `sonoshift demo --real`


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


def african_test_part(out: Path, data_root: Path) -> Path:
    """The African test part (all centres; never used for training) prepared at 64 px under OUT."""
    from sonoshift.data.prepare import PrepareConfig, prepare
    from sonoshift.data.resize import ResizeConfig
    from sonoshift.pipeline.spain_africa import african_test_spec

    data = out / "african" / "test_part"
    if not (data / "dataset.json").is_file():
        prepare(african_test_spec(data_root), data, PrepareConfig(resize=ResizeConfig(size=64)), progress=False)
    return data


def _cache(data: Path, domains: list[str], splits: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Frames and field-of-view masks of ``domains`` over ``splits`` of a prepared folder."""
    from sonoshift.data.cache import has_cache, load_cache

    x, m = [], []
    for sp in splits:
        for d in domains:
            if has_cache(data, sp, d):  # a centre may have no frame in a split
                x.append(np.asarray(load_cache(data, sp, d, None)))
                m.append(np.asarray(load_cache(data, sp, d, "mask")))
    return np.concatenate(x), np.concatenate(m)


def eval_sets(study: str, data: Path, source: str, target: str, out: Path, data_root: Path,
              african: str = "test"):
    """(source frames, their masks, target frames) the study is scored on (uint8). ``african`` "adaptation": the
    African study is scored on the val and test splits of its own prepared folder (adaptation part frames that
    no translator trained on: the set to choose designs on), "test": on the African test part."""
    if study == "fpdb" or african == "adaptation":
        x, m = _cache(data, [source], ("val", "test"))
        y, _ = _cache(data, [target], ("val", "test"))
        return x, m, y
    import json

    test = african_test_part(out, data_root)
    centres = sorted(json.loads((test / "dataset.json").read_text())["domains"])
    others = [c for c in centres if c != target]
    splits = ("train", "val", "test")  # every split of the test-part folder is test part
    x, m = _cache(test, others, splits)
    y, _ = _cache(test, [target], splits)
    return x, m, y


def parse_variant(item: str) -> tuple[str, str, list[str]]:
    """``NAME=METHOD:KEY=VALUE[;KEY=VALUE...]`` -> (NAME, METHOD, overrides)."""
    name, sep, rest = item.partition("=")
    method, sep2, sets = rest.partition(":")
    if not (sep and sep2 and name and method in STEPS and method != "cyclegan"):
        raise SystemExit(f"--variant {item!r}: expected NAME=ddgan:KEY=VALUE[;KEY=VALUE] (or cascade).")
    return name, method, [s for s in sets.split(";") if s]


def train_translators(data: Path, source: str, target: str, models: Path, budget: dict[str, int],
                      variants: list[str] = ()) -> dict[str, Path]:
    """The CPU configs' CycleGAN, DDGAN and cascade (those in ``budget``: method -> steps) trained on the train
    split (reused when finished); each ``variants`` item (``parse_variant``) is one more run of a method with its
    own overrides, under models/NAME, at that method's budget."""
    from sonoshift.methods import train_method

    jobs = [(m, m, []) for m in budget] + [(n, m, sets) for n, m, sets in map(parse_variant, variants)]
    runs = {}
    for name, method, sets in jobs:
        run, steps = models / name, budget.get(method, STEPS[method])
        if not (run / "done").is_file():
            overrides = [f"data.source_domain={source}", f"data.target_domain={target}", "data.size=64",
                         f"train.max_steps={steps}", "train.threads=1", "train.seed=0"]
            if method != "cyclegan":
                overrides += [f"cyclegan={models / 'cyclegan'}", "train.tensorboard=false", "train.image_every=0"]
            print(f"train {name} ({method}, {steps} steps{', ' if sets else ''}{' '.join(sets)}) -> {run}", flush=True)
            train_method(method, data, run, config=ROOT / "configs" / "cpu" / f"{method}.yaml",
                         overrides=overrides + sets, resume=(run / "checkpoints" / "latest").is_file(), progress=False)
            (run / "done").write_text("ok\n")
        runs[name] = run
    return runs


def translators(data: Path, source: str, target: str, models: dict[str, Path]) -> dict[str, object]:
    from sonoshift.baselines import fit_histogram_match
    from sonoshift.inference.translate import Untranslated
    from sonoshift.methods import load_translator
    from sonoshift.methods.ddgan import DDGANConfig, fitted_anchor, training_data

    out: dict[str, object] = {"untranslated": Untranslated(source, target, (64, 64)),
                              "histogram_match": fit_histogram_match(data, source, target)}
    for kind in ("affine", "depth_affine"):
        cfg = load_config(DDGANConfig, ROOT / "configs" / "cpu" / "ddgan.yaml",
                          ["cyclegan=unused", f"anchor={kind}", f"data.source_domain={source}",
                           f"data.target_domain={target}", "data.size=64"])
        out[kind] = fitted_anchor(cfg, training_data(data, cfg))
    for name, run in models.items():
        out[name] = load_translator(run)
    return out


def translate(tr, x: np.ndarray) -> torch.Tensor:
    """uint8 frames -> translated frames in [0, 1] (N, 1, H, W), quantized as harmonize writes them; seed 0."""
    g = torch.Generator().manual_seed(0)
    xs = torch.from_numpy(x.astype(np.float32) / 255)[:, None]
    with torch.inference_mode():
        h = torch.cat([((tr(xs[i : i + 32] * 2 - 1, generator=g) + 1) / 2).clamp(0, 1)
                       for i in range(0, len(xs), 32)])
    return (h * 255).round() / 255


def kid_paired_bootstrap(feats: dict[str, torch.Tensor], ref: torch.Tensor, base: str, n_boot: int,
                         seed: int = 0) -> dict[str, dict[str, float]]:
    """KID of each row's features (all rows: the same N source frames) to ``ref`` with a 95% bootstrap interval,
    and the difference to row ``base`` on the same resamples (paired over source frames and target frames)."""
    from sonoshift.metrics.fid import kid_from_features

    def kid(a: torch.Tensor, b: torch.Tensor) -> float:
        return kid_from_features(a, b, subset_size=max(len(a), len(b)))[0]  # one subset: the unbiased MMD^2

    g = torch.Generator().manual_seed(seed)
    n, m = len(next(iter(feats.values()))), len(ref)
    draws: dict[str, list[float]] = {k: [] for k in feats}
    for _ in range(n_boot):
        ia, ib = torch.randint(0, n, (n,), generator=g), torch.randint(0, m, (m,), generator=g)
        for k, f in feats.items():
            draws[k].append(kid(f[ia], ref[ib]))
    out = {}
    for k, f in feats.items():
        d, b = np.array(draws[k]), np.array(draws[base])
        out[k] = {"kid": kid(f, ref), "lo": float(np.quantile(d, 0.025)), "hi": float(np.quantile(d, 0.975)),
                  "diff": kid(f, ref) - kid(feats[base], ref), "diff_lo": float(np.quantile(d - b, 0.025)),
                  "diff_hi": float(np.quantile(d - b, 0.975))}
    return out


def score(x: np.ndarray, m: np.ndarray, y: np.ndarray, rows: dict[str, object],
          extractors: dict[str, torch.nn.Module], n_boot: int) -> list[dict[str, object]]:
    from sonoshift.metrics import pair_metrics
    from sonoshift.metrics.fid import extract_features
    from sonoshift.metrics.histogram import bc_dataset

    xs = torch.from_numpy(x.astype(np.float32) / 255)[:, None]
    ys = torch.from_numpy(y.astype(np.float32) / 255)[:, None]
    mask = torch.from_numpy(m > 0)[:, None]
    outs = {name: translate(tr, x) for name, tr in rows.items()}
    table = [{"row": name, "n": len(x), "n_target": len(y),
              "ssim_src": float(pair_metrics(h, xs, mask)["ssim"].mean()), "bc_target": bc_dataset(h, ys)}
             for name, h in outs.items()]
    for k, e in extractors.items():
        with torch.inference_mode():
            feats = {name: extract_features(h, e) for name, h in outs.items()}
            ref = extract_features(ys, e)
        kids = kid_paired_bootstrap(feats, ref, "histogram_match", n_boot)
        for r in table:
            v = kids[str(r["row"])]
            r[f"kid_{k}"] = f"{v['kid']:.4f} [{v['lo']:.4f}, {v['hi']:.4f}]"
            r[f"dhm_{k}"] = f"{v['diff']:+.4f} [{v['diff_lo']:+.4f}, {v['diff_hi']:+.4f}]"
    for r in table:
        print(r, flush=True)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=Path("runs/real_anchors"))
    ap.add_argument("--plane-classifier", action="append", default=[], metavar="NAME=RUN",
                    help="a plane classifier whose penultimate features give a KID column kid_NAME (repeatable)")
    ap.add_argument("--train", action="store_true", help="also train and score CycleGAN, DDGAN and cascade")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=METHOD:KEY=VALUE[;KEY=VALUE]",
                    help="with --train: one more row, METHOD trained with these overrides (e.g. "
                    "ddgan_hm=ddgan:anchor=histogram_match); repeatable")
    ap.add_argument("--african-eval", choices=("test", "adaptation"), default="test",
                    help="score the African study on its test part (default) or on the adaptation part's val + test "
                    "splits (frames no translator trained on; choose designs there, never on the test part)")
    ap.add_argument("--boot", type=int, default=500, help="bootstrap resamples of the KID intervals")
    ap.add_argument("--studies", default="fpdb,african")
    ap.add_argument("--steps", default=",".join(f"{k}={v}" for k, v in STEPS.items()),
                    help="with --train: the translators and their step budgets, e.g. cyclegan=300,ddgan=100")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from sonoshift.judges.plane.embedding import load_plane_extractor
    from sonoshift.metrics.fid import default_extractor

    extractors = {"randconv": default_extractor()[0].eval()}
    for item in args.plane_classifier:
        name, _, path = item.partition("=") if "=" in item else ("plane", "", item)
        extractors[name] = load_plane_extractor(path)[0].eval()
    lines = ["Real frames (64 px) harmonized by each row: SSIM to the own source frame (in the field of view), dataset "
             "BC and KID to the target domain's frames (lower KID = closer) with a 95% bootstrap interval "
             f"({args.boot} resamples of source and target frames), and KID minus histogram matching's on the same "
             "resamples (closer than histogram matching: the interval is below 0).", ""]
    all_rows = []
    for study in args.studies.split(","):
        data, source, target = prepared(study, args.out, args.data_root)
        budget = {k: int(v) for k, v in (item.split("=") for item in args.steps.split(","))}
        models = train_translators(data, source, target, args.out / study / "models", budget,
                                   args.variant) if args.train else {}
        x, m, y = eval_sets(study, data, source, target, args.out, args.data_root, args.african_eval)
        rows = score(x, m, y, translators(data, source, target, models), extractors, args.boot)
        all_rows += [{"study": study, **r} for r in rows]
        what = ("val + test splits" if study == "fpdb" else "African test part" if args.african_eval == "test"
                else "val + test splits of the adaptation part")
        lines += [f"### {study}: {source} -> {target} ({what}: {len(x)} source, {len(y)} target frames)", "",
                  "| row | SSIM to source | BC to target | " + " | ".join(
                      f"KID {k} | KID {k} - hist. match" for k in extractors) + " |",
                  "|---|---|---|" + "---|---|" * len(extractors)]
        lines += [f"| {r['row']} | {r['ssim_src']:.3f} | {r['bc_target']:.3f} | "
                  + " | ".join(f"{r[f'kid_{k}']} | {r[f'dhm_{k}']}" for k in extractors) + " |" for r in rows]
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "real_anchors.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(all_rows[0]))
        w.writeheader()
        w.writerows(all_rows)
    (args.out / "real_anchors.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    exit_on_error(main)
