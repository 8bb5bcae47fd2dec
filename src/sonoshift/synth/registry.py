"""The synthesizer's entry in the method registry (one line to move when the model registry lands)."""

from __future__ import annotations

from typing import Any

from sonoshift.errors import SonoshiftError


def _no_translator(ckpt: Any, device: Any = None, **options: Any) -> Any:
    raise SonoshiftError(
        f"{ckpt.path} is a synthesizer ('synth'): it generates frames, it does not translate them; "
        "use `sonoshift synthesize --model RUN` or sonoshift.synth.load_synthesizer(RUN)."
    )


def register() -> None:
    """Add "synth" to ``sonoshift.methods`` (build = :func:`sonoshift.synth.train.build`)."""
    from sonoshift.methods import register_method
    from sonoshift.synth.train import build

    register_method("synth", build=build, load_translator=_no_translator)
