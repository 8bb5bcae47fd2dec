"""Ablation of the DDGAN / cascade design (issue 12) from one command, with the baselines every method must beat.

    python bench/ablate_ddgan.py --data runs/demo/data --cyclegan runs/demo/models/cyclegan --out runs/ablate \
        --steps 200 --frames 12 [--only ddgan,ddgan-l1,...] [--every 100] [--list]

Rows: untranslated, histogram matching, the affine and depth-affine anchors alone (no learning), CycleGAN, CycleGAN
+ best blur (sigma on val), then each variant trained for ``--steps`` steps on the train split
(configs/cpu/ddgan.yaml or cascade.yaml plus the variant's overrides)
and sampled once (seed 0) on the test split. Every test patient is kept; ``--frames`` evenly spaced frames per
patient. Scores against the simulator ground truth, inside the field of view: PSNR, SSIM, LNCC, BC, and the
texture check (RMS distance of log radial power spectra to the ground truth's, dB, lower is better); PSNR and
LNCC with a 95% bootstrap interval over patients. Trained variants are kept under OUT/<variant>/ and reused when
OUT/<variant>/done exists. ``--every K`` keeps a checkpoint every K steps and scores each one (rows
``variant@K``): a learning curve from one training run; the row ``variant`` is the checkpoint the run uses
(the CPU configs choose it on validation source frames, ``select_floor``; OUT/<variant>/selection.csv). ``--segmenter RUN/models/segmenter`` adds the
downstream Dice of the frozen target-domain segmenter on each row's outputs (vs the source label maps, inside the
field of view; mean over classes present, then over frames, with the patient interval) and the ground truth's
Dice (the ceiling) in the header. Writes OUT/ablation.md and OUT/ablation.csv. Set
OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sonoshift.config import load_config  # noqa: E402
from sonoshift.errors import exit_on_error  # noqa: E402
from sonoshift.metrics import pair_metrics  # noqa: E402
from sonoshift.metrics.bootstrap import patient_bootstrap  # noqa: E402
from sonoshift.metrics.spectrum import spectrum_distance  # noqa: E402

# The design changes of issue 12 and what turns each one off in the CPU configs (configs/cpu/ddgan.yaml,
# cascade.yaml): "-x" removes change x from the CPU config, "+x" adds x to it.
SRC = ["anchor=condition"]  # residual base = the condition itself (DDGAN: source; cascade: CycleGAN output)
SRC_CASCADE = [*SRC, "generator.in_channels=2"]  # x_t and the CycleGAN output only
NO_SMOOTH = ["generator.correction_sigma=0.0"]
NO_STRUCT = ["loss.structure=0.0"]
STRUCTURE_WEIGHT = {m: int(yaml.safe_load((ROOT / "configs" / "cpu" / f"{m}.yaml").read_text())["loss"]["structure"])
                    for m in ("ddgan", "cascade")}  # loss.structure in the CPU configs
OFF = {
    "residual": ["generator.output=tanh", *NO_SMOOTH],
    "l1": ["loss.l1_x0=0.0"],
    "zero_init": ["generator.zero_init=false"],
    "gn_ref": ["generator.group_norm=max"],
    "ema_warmup": ["train.ema_warmup=false"],
    "lr_hold": ["optim.decay_start=0.0"],
}
ALL_OFF = [o for v in OFF.values() for o in v]
T170 = ["schedule.stride=170"]
T250P = ["schedule.t_max=0.25", "schedule.start=partial"]


def _rows(method: str, src: list[str]) -> dict[str, tuple[str, list[str], str]]:
    """The ablation rows of one method (``src``: what moves its residual base back to the condition)."""
    m = method
    w = STRUCTURE_WEIGHT[m]
    return {
        m: (m, [], f"CPU config: depth anchor + smooth correction (3 px) + structure loss (weight {w})"),
        f"{m}-struct": (m, NO_STRUCT, "without the structure loss"),
        f"{m}-smooth": (m, NO_SMOOTH, "with a full-resolution correction"),
        f"{m}-struct-smooth": (m, [*NO_STRUCT, *NO_SMOOTH], "depth anchor only"),
        f"{m}-hm": (m, src, "residual base = the condition + smooth correction + structure loss"),
        f"{m}-hm-smooth-struct": (m, [*src, *NO_SMOOTH, *NO_STRUCT],
                                  "the former anchored design (base = the condition)"),
        **{f"{m}-{k}": (m, v, f"CPU config without {k}") for k, v in OFF.items()},
        f"{m}-old": (m, [*src, *NO_STRUCT, *ALL_OFF, *(["round_trip_noise=0.0"] if m == "cascade" else [])],
                     "the original design (every issue-12 change off)"),
        **{f"{m}+struct{k}": (m, [f"loss.structure={k}.0"], f"structure loss weight {k}") for k in (1, 3, 10, 30, 100) if k != w},
        f"{m}-t170": (m, T170, "reading 1 of 't = 170': step size 170 on a 1000 grid (6 steps from noise)"),
        f"{m}-t250partial": (m, T250P, "reading 2 of 't = 250': partial start at t = 0.25 (4 steps)"),
        f"{m}-t170partial": (m, ["schedule.t_max=0.17", "schedule.start=partial"],
                             "reading 2 of 't = 170': partial start at t = 0.17 (4 steps)"),
        f"{m}+affine": (m, ["anchor=affine"], "CPU config with the global affine anchor (one linear grey map)"),
        f"{m}+hm": (m, ["anchor=histogram_match"], "CPU config with the histogram anchor (the former CPU config)"),
        f"{m}+smooth6": (m, ["generator.correction_sigma=6.0"], "CPU config with a coarser correction (6 px)"),
        f"{m}+despeckle": (m, ["anchor_despeckle=true"], "CPU config + the anchor's fitted despeckle"),
        f"{m}-despeckle": (m, ["anchor_despeckle=false"], "CPU config without the anchor's despeckle"),
        f"{m}+gain": (m, ["generator.output=gain"], "CPU config with a multiplicative (gain) correction"),
    }


VARIANTS: dict[str, tuple[str, list[str], str]] = {
    # name: (method, overrides on configs/cpu/<method>.yaml, what it tests)
    **_rows("ddgan", SRC),
    "ddgan+cn0.1": ("ddgan", ["condition_noise=0.1"], "CPU config + noise 0.1 on the synthetic source condition"),
    "ddgan+see_cond": ("ddgan", [*SRC, *NO_SMOOTH, *NO_STRUCT, "discriminator.see_condition=true"],
                       "former anchored design + condition shown to D"),
    **_rows("cascade", SRC_CASCADE),
    "cascade-rt": ("cascade", ["round_trip_noise=0.0"], "CPU config, plain round trips"),
    "cascade-joint": ("cascade", ["joint.enabled=true", "joint.content=mse_ssim"],
                      "CPU config + joint fine-tuning with the content loss"),
}


def test_frames(data: Path, source: str, target: str, per_patient: int, split: str = "test") -> dict[str, np.ndarray]:
    """Every patient of ``split``, ``per_patient`` evenly spaced source frames each: frames, truth, masks, patient
    ids."""
    cache = data / "cache" / split
    frames = np.load(cache / f"{source}.npy")
    truth = np.load(cache / f"{source}.gt_{target}.npy")
    masks = np.load(cache / f"{source}.mask.npy") > 0
    with open(data / f"manifest_{split}.csv") as f:
        patients = np.array([r["patient_id"] for r in csv.DictReader(f) if r["domain"] == source])
    assert len(patients) == len(frames), "manifest and cache disagree"
    keep = []
    for p in np.unique(patients):
        idx = np.nonzero(patients == p)[0]
        keep += list(idx[np.linspace(0, len(idx) - 1, min(per_patient, len(idx))).round().astype(int)])
    keep = np.array(sorted(set(keep)))
    labels = np.load(cache / f"{source}.label_map.npy", mmap_mode="r")
    return {"x": frames[keep], "gt": truth[keep], "mask": masks[keep], "patient": patients[keep],
            "label": np.asarray(labels[keep])}


def dice(seg, frames: np.ndarray, t: dict[str, np.ndarray]) -> np.ndarray:
    """Per-frame mean Dice (classes present in prediction or reference) of ``seg`` on uint8 ``frames``."""
    from sonoshift.deploy.quality import frame_dice
    from sonoshift.downstream.evaluate_seg import label_lut

    return frame_dice(seg, frames, label_lut(seg)[t["label"]], t["mask"])


def translate(tr, x: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 frames -> translated uint8 frames (as `harmonize` writes them), one seeded generator."""
    from sonoshift.inference.translate import to_signed, to_uint8

    g = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        out = [to_uint8(tr(to_signed(x[i : i + 32]), generator=g)) for i in range(0, len(x), 32)]
    return np.concatenate(out)


def score(name: str, desc: str, out: np.ndarray, t: dict[str, np.ndarray], seconds: float, seg=None) -> dict[str, object]:
    a = torch.from_numpy(out.astype(np.float32) / 255)[:, None]
    b = torch.from_numpy(t["gt"].astype(np.float32) / 255)[:, None]
    m = torch.from_numpy(t["mask"])[:, None]
    vals = pair_metrics(a, b, m)
    spec = spectrum_distance(a * m, b * m)
    row: dict[str, object] = {"row": name, "what": desc, "seconds": round(seconds, 1)}
    for k in ("psnr", "lncc"):
        iv = patient_bootstrap(vals[k].numpy(), t["patient"], seed=0)
        row[k], row[f"{k}_ci"] = iv.mean, f"[{iv.low:.3f}, {iv.high:.3f}]"
    row["ssim"] = float(vals["ssim"].mean())
    row["bc"] = float(vals["bc"].mean())
    row["spectrum_db"] = float(spec.mean())
    if seg is not None:
        iv = patient_bootstrap(dice(seg, out, t), t["patient"], seed=0)
        row["dice"], row["dice_ci"] = iv.mean, f"[{iv.low:.3f}, {iv.high:.3f}]"
    return row


def no_learning_anchor(data: Path, cyclegan: Path, kind: str, despeckle: bool = False):
    """The ``kind`` anchor of configs/cpu/ddgan.yaml fitted on the train split, as a translator."""
    from sonoshift.methods.ddgan import DDGANConfig, fitted_anchor, training_data

    cfg = load_config(DDGANConfig, ROOT / "configs" / "cpu" / "ddgan.yaml",
                      [f"cyclegan={cyclegan}", f"anchor={kind}", f"anchor_despeckle={str(despeckle).lower()}"])
    return fitted_anchor(cfg, training_data(data, cfg))


def train_variant(name: str, data: Path, cyclegan: Path, out: Path, steps: int, seed: int, every: int = 0) -> Path:
    method, extra, _ = VARIANTS[name]
    run = out / name
    if (run / "done").is_file():
        return run
    if method == "ddgan":
        from sonoshift.methods.ddgan import DDGANConfig as Cfg
        from sonoshift.methods.ddgan import train_ddgan as train
    else:
        from sonoshift.methods.cascade import CascadeConfig as Cfg  # type: ignore[assignment]
        from sonoshift.methods.cascade import train_cascade as train  # type: ignore[assignment]
    overrides = [f"cyclegan={cyclegan}", f"train.max_steps={steps}", f"train.seed={seed}", "train.threads=1",
                 "train.tensorboard=false", "train.image_every=0", f"train.checkpoint_every={every or steps}",
                 *(["train.keep_last=0"] if every else []), *extra]
    cfg = load_config(Cfg, ROOT / "configs" / "cpu" / f"{method}.yaml", overrides)
    train(data, cfg, run, progress=False)
    (run / "done").write_text("ok\n")
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    ap.add_argument("--cyclegan", type=Path, default=Path("runs/demo/models/cyclegan"))
    ap.add_argument("--out", type=Path, default=Path("runs/ablate"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--frames", type=int, default=12, help="test frames per patient (every patient is kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="test", help="the split scored (select designs on val, report on test)")
    ap.add_argument("--only", default="", help="comma-separated variants (default all); baselines always run")
    ap.add_argument("--segmenter", type=Path, default=None, help="frozen target-domain segmenter: adds Dice")
    ap.add_argument("--every", type=int, default=0, help="also score the checkpoints every K steps (learning curve)")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    if args.list:
        for k, (m, o, d) in VARIANTS.items():
            print(f"{k:<22} {m:<8} {d}  {' '.join(o)}")
        return
    torch.set_num_threads(1)
    from sonoshift.baselines import Blurred, choose_sigma, fit_histogram_match
    from sonoshift.methods import load_translator
    from sonoshift.inference.translate import Untranslated

    args.out.mkdir(parents=True, exist_ok=True)
    cg = load_translator(args.cyclegan)
    src, tgt = cg.source_domain, cg.target_domain
    t = test_frames(args.data, src, tgt, args.frames, args.split)
    print(f"{args.split}: {len(t['x'])} frames from {len(np.unique(t['patient']))} patients", flush=True)
    seg = None
    if args.segmenter is not None:
        from sonoshift.downstream.segmenter import load_segmenter

        seg = load_segmenter(args.segmenter)
        iv = patient_bootstrap(dice(seg, t["gt"], t), t["patient"], seed=0)
        args.dice_ceiling = f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]"
        print(f"ground-truth Dice (ceiling) {args.dice_ceiling}", flush=True)
    rows = []

    def add(name: str, desc: str, tr, seconds: float = 0.0) -> None:
        rows.append(score(name, desc, translate(tr, t["x"]), t, seconds, seg))
        r = rows[-1]
        extra = f"  Dice {r['dice']:.3f} {r['dice_ci']}" if seg is not None else ""
        print(f"{name:<22} PSNR {r['psnr']:.2f} {r['psnr_ci']}  LNCC {r['lncc']:.3f} {r['lncc_ci']}  "
              f"SSIM {r['ssim']:.3f}  BC {r['bc']:.3f}  spec {r['spectrum_db']:.2f} dB{extra}", flush=True)

    add("untranslated", "raw source frames", Untranslated(src, tgt, cg.image_size))
    add("histogram_match", "histogram matching to target train frames", fit_histogram_match(args.data, src, tgt))
    for kind in ("affine", "depth_affine"):  # the affine anchors alone (no learning), fitted on the train split
        add(kind, f"the {kind} anchor alone (no learning)", no_learning_anchor(args.data, args.cyclegan, kind))
    add("depth_affine+despeckle", "the depth_affine anchor with its fitted despeckle alone (no learning)",
        no_learning_anchor(args.data, args.cyclegan, "depth_affine", despeckle=True))
    add("cyclegan", "CycleGAN", cg)
    sigma, _ = choose_sigma(cg, args.data)
    add("cyclegan_blur", f"CycleGAN + blur sigma {sigma:g} (best on val)", Blurred(cg, sigma))
    names = [n for n in args.only.split(",") if n] or list(VARIANTS)
    for name in names:
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}; --list shows them")
        t0 = time.perf_counter()
        run = train_variant(name, args.data, args.cyclegan, args.out, args.steps, args.seed, args.every)
        seconds = time.perf_counter() - t0
        chosen = run / "checkpoints" / "selected"  # the config's select_floor chose a checkpoint (methods.select)
        if args.every:
            for k in range(args.every, args.steps + (args.every if chosen.is_file() else 0), args.every):
                ckpt = run / "checkpoints" / f"step_{k:08d}"
                if ckpt.is_dir():
                    add(f"{name}@{k}", VARIANTS[name][2], load_translator(ckpt))
        desc = VARIANTS[name][2]
        if chosen.is_file():
            desc += f"; checkpoint chosen without ground truth: {chosen.read_text().strip()}"
        add(name, desc, load_translator(run), seconds)
        write(rows, args)
    write(rows, args)


def write(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    with_dice = "dice" in rows[0] if rows else False
    cols = ["row", "psnr", "psnr_ci", "lncc", "lncc_ci", "ssim", "bc", "spectrum_db",
            *(["dice", "dice_ci"] if with_dice else []), "seconds", "what"]
    with open(args.out / "ablation.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    lines = [f"Ablation at {args.steps} steps, seed {args.seed}, {args.split} frames vs simulator ground truth "
             f"(PSNR/LNCC: mean [95% patient bootstrap]; spectrum: dB to GT, lower = closer texture"
             + (f"; Dice: frozen target segmenter, ground truth {args.dice_ceiling}" if with_dice else "") + ").", "",
             "| row | GT PSNR dB | LNCC | SSIM | BC | spectrum dB |" + (" Dice |" if with_dice else "") + " what |",
             "|---|---|---|---|---|---|" + ("---|" if with_dice else "") + "---|"]
    for r in rows:
        d = f" {r['dice']:.3f} {r['dice_ci']} |" if with_dice else ""
        lines.append(f"| {r['row']} | {r['psnr']:.2f} {r['psnr_ci']} | {r['lncc']:.3f} {r['lncc_ci']} | "
                     f"{r['ssim']:.3f} | {r['bc']:.3f} | {r['spectrum_db']:.2f} |{d} {r['what']} |")
    (args.out / "ablation.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    exit_on_error(main)
