"""`sonoshift harmonize`: a trained model on frames, folders, cine-loops, or a prepared split."""

from __future__ import annotations

from pathlib import Path

import typer


def harmonize_cmd(
    inputs: list[Path] = typer.Argument(None, help="Frames, folders of frames, MP4/AVI/DICOM cine-loops, .npy stacks."),
    model: Path = typer.Option(..., "--model", "-m", help="Checkpoint folder, run folder (latest checkpoint), model.safetensors, or an exported .onnx (--runtime onnx)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (a translation run folder with --dataset); "
                             "existing files there are never overwritten unless they are harmonize's own results."),
    dataset: Path | None = typer.Option(None, "--dataset", help="Prepared dataset: translate the source frames of --split."),
    split: str = typer.Option("test", "--split", help="Split of --dataset to translate."),
    frames: bool = typer.Option(False, "--frames", help="Also write PNG frames (OUT/<name>/00000.png ...)."),
    paste_back: bool = typer.Option(False, "--paste-back", help="Paste the result into the original frame geometry."),
    no_crop: bool = typer.Option(False, "--no-crop", help="Feed whole frames (no field-of-view crop)."),
    batch_size: int = typer.Option(8, "--batch-size", "-b", min=1, help="Frames per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps."),
    reverse: bool = typer.Option(False, "--reverse", help="Translate target -> source (models that have that "
                                 "direction, e.g. CycleGAN)."),
    samples: int = typer.Option(1, "--samples", min=1, help="Stochastic models: K samples per frame; writes their mean, "
                                "and their per-pixel std as 8-bit grey levels of the 0..255 output (std in [0, 1] "
                                "units = value / 255; 0 outside the field of view) under OUT/uncertainty/, in the "
                                "same geometry and format as the outputs."),
    force: bool = typer.Option(False, "--force", help="Replace earlier harmonize results at --out made with another "
                               "model or settings (files sonoshift did not write are never replaced)."),
    allow_leakage: bool = typer.Option(False, "--allow-leakage", help="With --dataset: translate a split that shares "
                                       "patients with the model's training split (the report marks it in red)."),
    runtime: str = typer.Option("torch", "--runtime", help="torch (checkpoint) or onnx (ONNX Runtime on the CPU: an "
                                "exported .onnx file, or a checkpoint exported on the fly)."),
    live: str | None = typer.Option(None, "--live", help="Live source: capture device number (0, 1...) or a "
                                    "video/DICOM played at its frame rate; writes OUT/live.mp4 and OUT/live.json."),
    show: bool = typer.Option(False, "--show", help="--live: also show the frames in a window (needs a display)."),
    queue: int = typer.Option(2, "--queue", min=1, help="--live: frames that may wait; older ones are dropped "
                              "(and counted)."),
    max_frames: int | None = typer.Option(None, "--max-frames", min=1, help="--live: stop after this many frames."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Harmonize frames and cine-loops (MP4 out at the input frame rate), or a prepared split for evaluation."""
    from sonoshift.errors import SonoshiftError
    from sonoshift.inference.harmonize import harmonize_dataset, harmonize_inputs

    options = {"reverse": True} if reverse else {}
    if live is not None:
        from sonoshift.deploy.live import harmonize_live

        if inputs or dataset is not None:
            raise SonoshiftError("give either --live SOURCE or inputs/--dataset, not both.")
        stats = harmonize_live(model, live, out, runtime=runtime, device=device, queue_size=queue,
                               max_frames=max_frames, show=show, paste_back=paste_back, crop=not no_crop, force=force,
                               **options)
        typer.echo(f"{stats.summary()}; wrote {out / 'live.mp4'} and {out / 'live.json'}")
        return
    if dataset is not None:
        if inputs:
            raise SonoshiftError("give either input files or --dataset, not both.")
        run = harmonize_dataset(model, dataset, out, split=split, batch_size=batch_size, device=device,
                                progress=not quiet, samples=samples, force=force,
                                allow_leakage=allow_leakage, runtime=runtime, **options)
        typer.echo(f"wrote translation run {run}")
        return
    written = harmonize_inputs(model, list(inputs or []), out, frames=frames, paste_back=paste_back,
                               batch_size=batch_size, device=device, crop=not no_crop, progress=not quiet,
                               samples=samples, force=force, runtime=runtime, **options)
    for p in written:
        typer.echo(str(p))


def register(app: typer.Typer) -> None:
    """Add `harmonize` to the CLI."""
    app.command("harmonize")(harmonize_cmd)
