"""`sonoshift train <method>`: one command per registered method, made from its registry entry.

The command list comes from ``sonoshift.methods`` at the moment it is asked for, so a method registered by a
plug-in (``SONOSHIFT_PLUGINS``) or by a test is trainable without touching this file. Every command takes the
same options, ``key=value`` overrides, and ``--<key> PATH`` for each trained run the method needs
(``MethodSpec.needs``, e.g. ``--cyclegan`` for the diffusion GAN).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

OVERRIDES_HELP = "key=value config overrides, e.g. train.lr=1e-4 train.max_steps=100."


def report(result: Any, out: Path) -> None:
    """Print how a run ended; exit 130 after a Ctrl-C (checkpoint saved)."""
    if result.interrupted:
        typer.echo(f"interrupted at step {result.step}; checkpoint saved to {result.checkpoint}; "
                   f"continue with the same command and --resume.", err=True)
        sys.exit(130)
    losses = " ".join(f"{k}={v:.4g}" for k, v in result.losses.items())
    steps = f"{result.step} step{'s' if result.step != 1 else ''}"
    typer.echo(f"trained {steps} ({epochs_text(result)}) into {out}; last checkpoint {result.checkpoint}")
    if losses:
        typer.echo(f"last losses: {losses}")
    guard = _anchor_guard(result.checkpoint)
    if guard:
        typer.echo(guard)


def _anchor_guard(checkpoint: Any) -> str:
    """The anchor guard's sentence when the run's checkpoint has a guarded affine anchor, else ""."""
    from sonoshift.errors import SonoshiftError
    from sonoshift.methods.anchor import checkpoint_guard
    from sonoshift.methods.anchor_guard import guard_note

    try:
        reading = checkpoint_guard(checkpoint) if checkpoint else None
    except SonoshiftError:
        return ""
    return guard_note(reading) if reading else ""


def epochs_text(result) -> str:
    """``2 epochs``, ``1 epoch``, ``0.25 of an epoch`` from a TrainResult (never "0 epochs" after real steps)."""
    per = getattr(result, "steps_per_epoch", 0)
    if not per:
        return f"{result.epoch} epoch{'s' if result.epoch != 1 else ''}"
    e = result.step / per
    if e < 1:
        return f"{e:.2g} of an epoch"
    return f"{e:.3g} epoch{'s' if e != 1 else ''}"


def default_network_note(config: Path | None, method: str) -> None:
    """Say which network a run without ``-c`` trains (the paper-size defaults are slow on a CPU)."""
    if config is None:
        typer.echo(f"note: no -c/--config given, so this trains the paper-size {method} network (the defaults); "
                   f"on a CPU pass -c cpu/{method} for the small one.", err=True)


def method_command(spec: Any) -> Any:
    """The `sonoshift train <spec.name>` command of a registry entry (a typer command built from its spec)."""
    P = inspect.Parameter
    cfg_help = (f"YAML config: a path or a named config{', e.g. ' + spec.default_config if spec.default_config else ''}"
                " (default: the paper-size network).")
    params = [
        P("overrides", P.KEYWORD_ONLY, annotation=list[str], default=typer.Argument(None, help=OVERRIDES_HELP)),
        P("data", P.KEYWORD_ONLY, annotation=Path, default=typer.Option(
            ..., "--data", "-d", help="Prepared dataset folder (output of `sonoshift prepare`).")),
        P("out", P.KEYWORD_ONLY, annotation=Path, default=typer.Option(
            ..., "--out", "-o", help="Run folder (checkpoints, logs, TensorBoard).")),
        P("config", P.KEYWORD_ONLY, annotation=Path | None, default=typer.Option(
            None, "--config", "-c", help=cfg_help)),
        P("resume", P.KEYWORD_ONLY, annotation=bool, default=typer.Option(
            False, "--resume", help="Continue exactly from the latest checkpoint in --out.")),
        P("quiet", P.KEYWORD_ONLY, annotation=bool, default=typer.Option(False, "--quiet", "-q", help="No progress bar.")),
    ]
    for key, needed in spec.needs.items():
        params.append(P(key, P.KEYWORD_ONLY, annotation=Path | None, default=typer.Option(
            None, f"--{key.replace('_', '-')}", help=f"Run folder of `sonoshift train {needed}`: the trained "
            f"{needed} this method builds on, e.g. whose frozen generators make its condition images (sets `{key}`).")))

    def command(**kw: Any) -> None:
        from sonoshift.methods import train_method

        default_network_note(kw["config"], spec.name)
        extra = [f"{k}={kw[k]}" for k in spec.needs if kw.get(k) is not None]
        result = train_method(spec.name, kw["data"], kw["out"], config=kw["config"],
                              overrides=[*(kw["overrides"] or []), *extra], resume=kw["resume"],
                              progress=not kw["quiet"])
        report(result, kw["out"])

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = spec.summary
    single = typer.Typer(add_completion=False)
    single.command(spec.name, help=spec.summary, short_help=spec.summary)(command)
    return typer.main.get_command(single)


class MethodGroup(TyperGroup):
    """The `train` group: its commands are the registered methods that can be trained."""

    def list_commands(self, ctx: Any) -> list[str]:
        from sonoshift.methods import available

        return [s.name for s in available() if not s.trainer]  # judges with their own command are left out

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        from sonoshift.methods import get

        return method_command(get(cmd_name))


train_app = typer.Typer(cls=MethodGroup, help="Train a registered method on a prepared dataset.",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the `train` sub-app to the CLI."""
    app.add_typer(train_app, name="train")
