"""The kinds of trained model and the inference object each kind loads to (one Protocol per kind).

A registered method (``sonoshift.methods.register``) names its kind; ``load_model(path)`` returns an object
that follows that kind's Protocol, and every generic caller (harmonize, the study pipeline, the report, the
coming synthesis loop) talks to the Protocol only. Optional behaviour is part of the Protocol with a default in
the matching base class, so callers never probe with ``hasattr``.

- ``translator``: an image-to-image harmonizer (CycleGAN, DDGAN, cascade);
- ``synthesizer``: a conditional image generator (the coming diffusion synthesis);
- ``judge``: a downstream model that scores images (segmenters, plane classifier, GA estimator).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from sonoshift.errors import SonoshiftError


@runtime_checkable
class Translator(Protocol):
    """A trained image translator: float (B,1,H,W) in [-1,1] -> same shape in [-1,1], same device.

    ``stochastic``: True when outputs depend on ``generator`` (then ``uncertainty`` draws K samples);
    ``uncertainty(x, k, generator)`` -> (mean, per-pixel std), both (B,1,H,W) in [-1,1] units.
    """

    method: str
    image_size: tuple[int, int]
    source_domain: str
    target_domain: str
    stochastic: bool

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...

    def uncertainty(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class TranslatorBase:
    """Defaults for the optional parts of :class:`Translator`: deterministic, so K samples are refused."""

    method: str = "translator"
    stochastic: ClassVar[bool] = False

    def uncertainty(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Deterministic translators have no sample spread: one clear error instead of K equal samples."""
        raise SonoshiftError(f"K samples per frame need a stochastic model; '{self.method}' is deterministic.")


class GeneratorTranslator(TranslatorBase):
    """One feed-forward generator network as a translator: (B,1,H,W) in [-1,1] -> same; follows the input's
    device. Methods whose inference is a single generator pass (CycleGAN, distilled students) subclass it and set
    ``method``."""

    def __init__(self, net: torch.nn.Module, image_size: tuple[int, int], source: str, target: str) -> None:
        self.net = net.eval().requires_grad_(False)
        self.image_size = image_size
        self.source_domain, self.target_domain = source, target

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 1:
            raise SonoshiftError(f"translator input must be (B,1,H,W), got {tuple(x.shape)}.")
        p = next(self.net.parameters())
        if p.device != x.device:
            self.net.to(x.device)
        with torch.no_grad():
            return self.net(x.to(p.dtype)).to(x.dtype)


@runtime_checkable
class Synthesizer(Protocol):
    """A trained conditional generator: ``conditions`` (name -> (B,) tensor, e.g. plane ids, GA in weeks) ->
    (B,1,H,W) images in [-1,1]; randomness only from ``generator``."""

    method: str
    image_size: tuple[int, int]
    condition_names: tuple[str, ...]

    def __call__(
        self, conditions: dict[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> torch.Tensor: ...


@runtime_checkable
class Judge(Protocol):
    """A trained downstream model: (B,1,H,W) images in [-1,1] -> predictions (B, ...) for its ``task``
    ("segmentation": class ids (B,H,W); "plane": class probabilities (B,C); "ga": weeks (B,)).
    ``features(x)`` gives the penultimate embedding (B,F) used for domain-aware FID/KID."""

    method: str
    task: str
    classes: tuple[str, ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def features(self, x: torch.Tensor) -> torch.Tensor: ...


class JudgeBase:
    """Defaults for the optional parts of :class:`Judge`: no embedding."""

    method: str = "judge"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise SonoshiftError(f"judge '{self.method}' has no feature embedding.")


KINDS: dict[str, Any] = {"translator": Translator, "synthesizer": Synthesizer, "judge": Judge}

__all__ = ["KINDS", "GeneratorTranslator", "Judge", "JudgeBase", "Synthesizer", "Translator", "TranslatorBase"]
