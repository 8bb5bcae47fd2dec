"""Is a model being evaluated on patients it was trained on? (checked at every read of a split)

Checkpoints record the split they were trained on (``state["training_split"]``: the hash of the dataset's
patient lists and the hashed ids of the training patients, see :func:`sonoshift.data.splits.split_record`).
A model that builds on another one (the cascade and the diffusion GAN use a trained CycleGAN, named by the
``cyclegan`` key of their config; a distilled student its ``teacher``) has seen that model's training patients
too. An exported .onnx model carries all these records (``state["training_splits"]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sonoshift.data.splits import shared_patients, verify_split
from sonoshift.errors import SonoshiftError


def training_records(state: dict[str, Any], depth: int = 0) -> list[dict[str, Any]]:
    """The training-split records of a checkpoint state and of the checkpoints it builds on."""
    from sonoshift.engine.checkpoint import read_model

    out = [state["training_split"]] if isinstance(state.get("training_split"), dict) else []
    out += [r for r in state.get("training_splits") or [] if isinstance(r, dict)]  # an exported model's records
    config = state.get("config") or {}
    base = config.get("cyclegan") or config.get("teacher")  # a distilled student has seen its teacher's patients
    if base and depth < 3:
        try:
            out += training_records(read_model(base).state, depth + 1)
        except SonoshiftError:
            pass  # the base model is gone: only its own record can be checked
    return out


def check_model_split(
    state: dict[str, Any] | None, dataset: str | Path, split: str, *, allow: bool = False, model: str = "the model"
) -> dict[str, Any] | None:
    """Verify the split ``split`` of ``dataset`` and that the model (checkpoint ``state``) was not trained on
    any of its patients. Raises SonoshiftError on leakage unless ``allow``; then returns a description of the
    leakage for run.json (None when there is none)."""
    splits = verify_split(dataset, split)
    if splits is None or state is None:
        return None
    shared: list[str] = []
    for rec in training_records(state):
        shared += [p for p in shared_patients(rec, splits, split) if p not in shared]
    if not shared:
        return None
    total = len({p for d, parts in splits.items() if d != "seed" and isinstance(parts, dict)
                 for p in parts.get(split, [])})
    if not allow:
        raise SonoshiftError(
            f"{model} was trained on {len(shared)} of the {total} patient(s) of the {split} split of {dataset} "
            f"(e.g. {shared[0]!r}), so its scores there would measure memorization; use a dataset split it was not "
            "trained on, or pass --allow-leakage to have the report marked in red."
        )
    return {"shared_patients": len(shared), "split_patients": total, "split": split,
            "note": f"{model} was trained on {len(shared)} of the {total} {split} patients"}
