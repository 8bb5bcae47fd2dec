"""The synthesizer on the REAL public data, end to end: one command sequence, printed and run.

    python bench/synth_real.py --out /tmp/synth_real                 # prepare, train, synthesize, evaluate
    python bench/synth_real.py --out /tmp/synth_real --dry-run       # only print the commands
    # the GPU config, smoke-sized on a CPU (its own network and loss; the budget only is cut):
    python bench/synth_real.py --out /tmp/real128 --size 128 --config configs/gpu/synth_real_128.yaml --steps 6 \
        --train-set train.batch_size=2 --train-set train.threads=2 --train-set diffusion.lr_warmup_steps=2 \
        --n-planes 12 --n-heads 8 --sample-steps 4 --judge-steps 60 --threads 2

Data (read in place from ``--data-root``, default ../shared/data): FETAL_PLANES_DB (planes; scanner = machine),
the African five-centre planes (planes; scanner = centre) and HC18 (plane brain, GA from the official HC by
Hadlock; scanner hc18). The African rule (judges/plane/african.py): the test part is never trained, tuned or
selected on, so the African set is prepared with a splits file (``synth/african.py``) that puts exactly the test
part in ``test`` and the adaptation part in ``train`` / ``val``; the synthesizer and the judges also drop any
test-part frame they might be given. The held-out real frames (the ``test`` splits: FETAL_PLANES_DB and HC18
patients never seen, the African test part) are only scored.

Stages (each skipped when its output is already there):
1. ``african_splits.json`` from the rule; ``sonoshift prepare --public ...`` for the three sets at ``--size``.
2. ``sonoshift train synth`` with ``configs/cpu/synth_real.yaml`` (one thread).
3. ``sonoshift synthesize`` twice: every plane with GA unknown (plane fidelity, realism, memorization) and HC18
   heads over the GA range (GA fidelity; scanner hc18, the only source of GA labels).
4. ``sonoshift evaluate-synth`` on both; the first trains the real judges (plane classifier on the three sets'
   training frames with early stopping on their val frames, GA regressor on HC18's training heads), the second
   reuses them (``--judges``).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from sonoshift.errors import exit_on_error

REPO = Path(__file__).resolve().parents[1]


def commands(out: Path, data_root: Path, size: int, config: str, steps: int, n_planes: int, n_heads: int,
             ga: str, guidance: float, judge_args: list[str], threads: int, train_set: list[str] = (),
             sample_steps: int = 20) -> list[tuple[Path, list[str]]]:
    """(output that marks the stage done, command) in order."""
    sh = [sys.executable, "-m", "sonoshift"]
    prep = [f"resize.size={size}"]
    d = {k: out / k for k in ("fpdb", "african", "hc18")}
    run, syn_p, syn_h, ev_p, ev_h = (out / k for k in ("run", "syn_planes", "syn_heads", "eval_planes", "eval_heads"))
    th = ["--threads", str(threads)]
    train_over = [f"data.paths=[{d['african']},{d['hc18']}]", f"data.size={size}", f"train.threads={threads}"]
    if steps:
        train_over.append(f"train.max_steps={steps}")
    train_over += list(train_set)
    return [
        (d["fpdb"], sh + ["prepare", "--public", "fetal_planes_db", "--data-root", str(data_root), "-o", str(d["fpdb"]),
                          "-q", *prep]),
        (d["african"], sh + ["prepare", "--public", "african_planes", "--data-root", str(data_root), "-o",
                             str(d["african"]), "-q", *prep, f"split.file={out / 'african_splits.json'}"]),
        (d["hc18"], sh + ["prepare", "--public", "hc18", "--data-root", str(data_root), "-o", str(d["hc18"]), "-q",
                          *prep]),
        (run / "checkpoints" / "latest", sh + ["train", "synth", "--data", str(d["fpdb"]), "-c", config, "-o", str(run),
                                    *train_over]),
        (syn_p, sh + ["synthesize", "--model", str(run), "--plane", "all", "--n", str(n_planes), "--guidance",
                      str(guidance), "--ga-guidance", str(guidance), "--steps", str(sample_steps), "-q", *th, "--out", str(syn_p)]),
        (syn_h, sh + ["synthesize", "--model", str(run), "--plane", "brain", "--ga", ga, "--scanner", "hc18", "--n",
                      str(n_heads), "--guidance", str(guidance), "--ga-guidance", str(guidance), "--steps", str(sample_steps),
                      "--seed", "100000", "-q", *th, "--out", str(syn_h)]),
        (ev_p, sh + ["evaluate-synth", str(syn_p), "-q", *th, *judge_args, "--out", str(ev_p)]),
        (ev_h, sh + ["evaluate-synth", str(syn_h), "-q", *th, "--judges", str(ev_p / "judges"), "--out", str(ev_h)]),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="work folder (prepared data, run, samples, evaluations)")
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--config", default="configs/cpu/synth_real.yaml")
    ap.add_argument("--steps", type=int, default=0, help="train.max_steps override (0 = the config's)")
    ap.add_argument("--n-planes", type=int, default=180, help="images over all planes (GA unknown)")
    ap.add_argument("--n-heads", type=int, default=60, help="HC18-scanner heads over --ga")
    ap.add_argument("--ga", default="12:37", help="GA range of the heads (HC18's Hadlock GAs span ~11-38 weeks)")
    ap.add_argument("--guidance", type=float, default=4.0, help="plane and GA guidance (4: chosen on validation)")
    ap.add_argument("--judge-steps", type=int, default=1600)
    ap.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                    help="more overrides of the training config (repeatable), e.g. train.batch_size=2 for a smoke run")
    ap.add_argument("--sample-steps", type=int, default=20, help="solver steps per sample")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    out = args.out.resolve()
    judge_args = ["--judge-steps", str(args.judge_steps), "--judge-set", "train.eval_every=80",
                  "--judge-set", "train.patience=6"]
    cmds = commands(out, args.data_root.resolve(), args.size, args.config, args.steps, args.n_planes, args.n_heads,
                    args.ga, args.guidance, judge_args, args.threads, args.train_set, args.sample_steps)
    splits = out / "african_splits.json"
    print(f"# 1. {splits}: python -c 'from sonoshift.synth.african import african_prepare_splits; ...'")
    if not args.dry_run and not splits.is_file():
        from sonoshift.data.splits import write_splits
        from sonoshift.synth.african import african_prepare_splits

        out.mkdir(parents=True, exist_ok=True)
        write_splits(splits, african_prepare_splits())
    for done, cmd in cmds:
        if cmd[3:5] == ["train", "synth"] and (out / "run" / "config.yaml").is_file() and not done.exists():
            cmd = [*cmd, "--resume"]  # an interrupted run continues exactly
        print(shlex.join(["sonoshift", *cmd[3:]]), flush=True)
        if args.dry_run or done.exists():
            continue
        subprocess.run(cmd, cwd=REPO, check=True)
    if not args.dry_run:
        for name in ("eval_planes", "eval_heads"):
            print(f"\n{out / name / 'summary.md'}:\n{(out / name / 'summary.md').read_text()}")


if __name__ == "__main__":
    exit_on_error(main)
