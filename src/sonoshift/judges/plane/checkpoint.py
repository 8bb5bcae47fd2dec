"""Self-describing plane-classifier checkpoints through the engine's checkpoint code.

``OUT/checkpoints/step_<best>/model.safetensors`` holds the weights (module ``classifier``) and, in its header,
the state: method ``plane_classifier``, classes, image size, input range, label column, training data and the
validation metrics, so ``read_model(OUT)`` alone rebuilds the classifier. ``OUT/classifier.json`` repeats the
state for people to read. Nothing is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import sonoshift
from sonoshift.atomic import atomic_write_text
from sonoshift.config import from_dict, to_dict
from sonoshift.engine.checkpoint import load_module, module_tensors, read_model, write_checkpoint
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.judges.plane.train import ClassifierConfig
from sonoshift.judges.plane.zoom import ZoomEnsemble

METHOD = "plane_classifier"
MODULE = "classifier"
SUMMARY_NAME = "classifier.json"


@dataclass(frozen=True)
class PlaneClassifier:
    """A trained classifier and what is needed to use it."""

    model: PlaneNet | ZoomEnsemble
    classes: tuple[str, ...]
    image_size: int
    label: str = "plane"
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def save_classifier(clf: PlaneClassifier, out: str | Path) -> Path:
    """Write the classifier into run folder ``out`` (atomic checkpoint + classifier.json). Returns ``out``."""
    out = Path(out)
    state = {
        "method": METHOD,
        "sonoshift_version": sonoshift.__version__,
        "architecture": "sonoshift.judges.plane.net.PlaneNet",
        "classes": list(clf.classes),
        "image_size": clf.image_size,
        "in_channels": 1,
        "input_range": [-1.0, 1.0],
        "label": clf.label,
        "config": clf.config,
        "info": clf.info,
        "step": int(clf.info.get("best_step", 0)),
    }
    if isinstance(clf.model, ZoomEnsemble):  # one network per zoom (zoom.py): rebuilt from "zooms"
        state["architecture"] = "sonoshift.judges.plane.zoom.ZoomEnsemble of PlaneNet"
        state["zooms"] = list(clf.model.zooms)
    sd = {k: v for k, v in clf.model.state_dict().items()}
    write_checkpoint(out, state["step"], model=module_tensors(f"model/{MODULE}", sd), train={}, state=state,
                     keep_last=1)
    atomic_write_text(out / SUMMARY_NAME, json.dumps(state, indent=2) + "\n")
    return out


def load_classifier(path: str | Path, device: str | torch.device | None = None) -> PlaneClassifier:
    """Read a classifier written by ``save_classifier`` (a run folder, checkpoint folder or model file)."""
    ckpt = read_model(path, expected="a plane classifier (from `sonoshift classify train`)")
    if ckpt.method != METHOD:
        raise SonoshiftError(f"checkpoint {ckpt.path} is a {ckpt.method!r} model, not a plane classifier.")
    st = ckpt.state
    try:
        classes = tuple(st["classes"])
        cfg = from_dict(ClassifierConfig, st.get("config", {}))
    except (KeyError, TypeError) as e:
        raise SonoshiftError(f"plane classifier {ckpt.path} has an incomplete state ({e}).") from None
    net = lambda: PlaneNet(len(classes), cfg.net)  # noqa: E731
    zooms = st.get("zooms")
    module = net() if zooms is None else ZoomEnsemble([net() for _ in zooms], zooms)
    model = load_module(ckpt, MODULE, module, prefer_ema=False).eval()
    if device is not None:
        model.to(device)
    return PlaneClassifier(model=model, classes=classes, image_size=int(st["image_size"]),
                           label=str(st.get("label", "plane")), config=st.get("config", {}), info=st.get("info", {}))


def config_dict(cfg: ClassifierConfig) -> dict[str, Any]:
    """The config as stored (a plain dict that ``from_dict`` reads back)."""
    return to_dict(cfg)


__all__ = ["NetConfig", "PlaneClassifier", "config_dict", "load_classifier", "save_classifier"]
