"""`sonoshift synthesize` and `sonoshift evaluate-synth` (`sonoshift train synth` comes from the method registry)."""

from __future__ import annotations

from pathlib import Path

import typer


def synthesize_cmd(
    model: Path = typer.Option(..., "--model", "-m", help="Synthesizer run folder (sonoshift train synth)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (prepared-dataset layout; replaced atomically)."),
    plane: str = typer.Option("all", "--plane", help="Plane name, comma-separated names, 'all', or '' (unknown)."),
    ga: str = typer.Option("", "--ga", help="GA in weeks (24) or a range lo:hi (20:32, evenly spaced); '' unknown."),
    n: int = typer.Option(16, "--n", help="Number of images."),
    scanner: str = typer.Option("", "--scanner", help="Scanner (a training domain, e.g. handheld); '' unknown."),
    guidance: float | None = typer.Option(None, "--guidance", help="Classifier-free guidance scale (1 = none)."),
    ga_guidance: float | None = typer.Option(None, "--ga-guidance", help="GA's own guidance scale (default: one "
                                             "joint scale, or the model config's diffusion.ga_guidance)."),
    steps: int | None = typer.Option(None, "--steps", help="Sampling steps (default: the model's config)."),
    sampler: str | None = typer.Option(None, "--sampler", help="dpmpp | ddim | unipc | ddpm."),
    seed: int = typer.Option(0, "--seed", help="Image i uses a generator seeded seed + i."),
    split: str = typer.Option("train", "--split", help="Manifest the images go to (train | val | test)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per sampling batch."),
    init: list[Path] = typer.Option(None, "--init", help="Image file or folder to start from (repeatable): each "
                                    "image becomes a variation of a real frame under the conditions (SDEdit)."),
    strength: float = typer.Option(0.5, "--strength", help="With --init: how far each start is noised (0..1; "
                                   "1 keeps only the coarse layout)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:1 | mps | auto."),
    threads: int = typer.Option(0, "--threads", help="Torch CPU threads (0 = default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate fetal ultrasound frames by plane, GA and scanner into a prepared-dataset folder + contact sheet;
    with --init, variations of real frames (image-guided)."""
    import torch

    from sonoshift.engine.device import select_device
    from sonoshift.synth.pipeline import load_synthesizer
    from sonoshift.synth.write import SynthesisRequest, synthesize

    if threads > 0:
        torch.set_num_threads(threads)
    pipe = load_synthesizer(model, select_device(device))
    req = SynthesisRequest(plane=plane, ga=ga, n=n, scanner=scanner, guidance=guidance, ga_guidance=ga_guidance,
                           steps=steps, sampler=sampler, seed=seed, split=split, batch_size=batch_size,
                           init=tuple(str(p) for p in init or ()), strength=strength)
    path = synthesize(pipe, out, req, progress=not quiet)
    typer.echo(f"wrote {n} synthetic frames to {path} (manifest_{split}.csv, contact_sheet.png)")


def evaluate_synth_cmd(
    synthetic: Path = typer.Argument(..., help="Folder written by `sonoshift synthesize`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (metrics.json/csv, summary.md, PNGs)."),
    real: list[Path] = typer.Option(None, "--real", help="Real prepared dataset(s); default: the training data."),
    judges: Path | None = typer.Option(None, "--judges", help="Judges folder from an earlier evaluate-synth, or a "
                                       "plane classifier run (sonoshift classify train)."),
    judge_steps: int = typer.Option(0, "--judge-steps", help="Step budget of the plane classifier trained here "
                                    "(0 = configs/cpu/plane_classifier.yaml's)."),
    judge_set: list[str] = typer.Option(None, "--judge-set", help="KEY=VALUE override of the plane classifier "
                                        "recipe trained here (repeatable), e.g. train.patience=6."),
    cas_steps: int = typer.Option(400, "--cas-steps", help="Training steps of the synthetic-only classifier."),
    lpips_weights: Path | None = typer.Option(None, "--lpips-weights", help="Folder with AlexNet + LPIPS heads."),
    seed: int = typer.Option(0, "--seed", help="Seed of judges, bootstrap and planted copies."),
    threads: int = typer.Option(0, "--threads", help="Torch CPU threads (0 = default)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Score synthetic frames: FID/KID, perceptual distances, diversity, near-copies, plane and GA fidelity."""
    import torch

    from sonoshift.synth.evaluation.evaluate import EvalSynthConfig, evaluate_synth

    if threads > 0:
        torch.set_num_threads(threads)
    cfg = EvalSynthConfig(judge_steps=judge_steps, judge_overrides=tuple(judge_set or ()), cas_steps=cas_steps, seed=seed,
                          lpips_weights=str(lpips_weights) if lpips_weights else None)
    res = evaluate_synth(synthetic, out, real=[str(r) for r in real] if real else None,
                         judges_dir=str(judges) if judges else None, cfg=cfg, progress=not quiet)
    from sonoshift.synth.evaluation.evaluate import summary_markdown

    typer.echo(summary_markdown(res))


def register(app: typer.Typer) -> None:
    """Add `synthesize` and `evaluate-synth`."""
    app.command("synthesize")(synthesize_cmd)
    app.command("evaluate-synth")(evaluate_synth_cmd)
