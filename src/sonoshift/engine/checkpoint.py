"""Checkpoints: safetensors weights + JSON state, written atomically, last k kept; loading never unpickles.

Layout (docs/engine.md §4)::

    RUN/checkpoints/latest                      text: newest complete checkpoint folder name
    RUN/checkpoints/step_00000300/model.safetensors        model/<module>/<key>, ema/<module>/<key>
    RUN/checkpoints/step_00000300/train_state.safetensors  optim/<opt>/<idx>/<key>, extra/<key>, rng/...
    RUN/checkpoints/step_00000300/state.json              + "checksums": sha256 of both weights files

Integrity: state.json records the sha256 of each weights file, and the model file's header carries a sha256 of
its tensors (``weights_sha256``, so a model file copied on its own can be checked too); both are verified on
load, so flipped bits stop with one sentence instead of producing garbage.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from sonoshift.atomic import atomic_dir, atomic_write_text
from sonoshift.errors import SonoshiftError
from sonoshift.outputs import file_digest

FORMAT = "1"
MODEL_FILE = "model.safetensors"
TRAIN_FILE = "train_state.safetensors"
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().clone()


def module_tensors(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{prefix/key: cpu tensor}`` for a module state dict (contiguous copies, safe to save)."""
    return {f"{prefix}/{k}": _cpu(v) for k, v in state.items()}


def optimizer_to_saved(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (``optim/<name>/<idx>/<key>``) and a JSON-able dict."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim/{name}/{idx}/{key}"] = _cpu(val)
            else:
                scalars.setdefault(str(idx), {})[key] = val
    groups = json.loads(json.dumps(sd["param_groups"], default=lambda o: list(o) if isinstance(o, tuple) else str(o)))
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_saved(
    name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], saved: dict[str, Any]
) -> None:
    """Load what :func:`optimizer_to_saved` produced into ``opt`` (tensors move to the params' devices)."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim/{name}/"
    for key, val in tensors.items():
        if key.startswith(prefix):
            idx, k = key[len(prefix) :].split("/", 1)
            state.setdefault(int(idx), {})[k] = val
    for idx, sc in saved.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(sc)
    groups = saved["param_groups"]
    for g in groups:
        for k in ("betas",):
            if isinstance(g.get(k), list):
                g[k] = tuple(g[k])
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_to_saved() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Global RNG states: torch (CPU, CUDA) as uint8 tensors; numpy and python as JSON lists."""
    import random

    import numpy as np

    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py = random.getstate()
    return tensors, {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [py[0], list(py[1]), py[2]],
    }


def rng_from_saved(tensors: dict[str, torch.Tensor], saved: dict[str, Any]) -> None:
    """Restore what :func:`rng_to_saved` produced."""
    import random

    import numpy as np

    torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda][: torch.cuda.device_count()])
    if "numpy" in saved:
        kind, keys, pos, has_gauss, cached = saved["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "python" in saved:
        v, st, g = saved["python"]
        random.setstate((v, tuple(st), g))


def write_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model: dict[str, torch.Tensor],
    train: dict[str, torch.Tensor],
    state: dict[str, Any],
    keep_last: int,
) -> Path:
    """Write ``run_dir/checkpoints/step_<step>`` atomically, point ``latest`` at it, prune to ``keep_last``.

    ``model`` and ``train`` are flat name->tensor dicts; ``state`` must be JSON-able and hold at least
    ``method``. The model file's header carries the state without optimizer/rng/extra parts, so the model file
    alone can rebuild a translator. Returns the checkpoint folder.
    """
    root = Path(run_dir) / "checkpoints"
    final = _write_folder(root / f"step_{step:08d}", model, train, state)
    atomic_write_text(root / "latest", final.name + "\n")
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _write_folder(final: Path, model: dict[str, torch.Tensor], train: dict[str, torch.Tensor],
                  state: dict[str, Any]) -> Path:
    """Write (or replace) the checkpoint folder ``final`` atomically: both weights files, the model file's header
    (the state without optimizer/rng/extra parts, and its tensors' digest) and state.json with the checksums."""
    light = {k: v for k, v in state.items() if k not in ("optimizers", "rng", "extra", "scaler", "checksums")}
    meta = {"sonoshift_format": FORMAT, "method": str(state["method"]), "state": json.dumps(light),
            "weights_sha256": tensors_digest(model)}
    state = {k: v for k, v in state.items() if k != "checksums"}
    with atomic_dir(final) as tmp:
        save_file(model, str(tmp / MODEL_FILE), metadata=meta)
        save_file(train, str(tmp / TRAIN_FILE), metadata={"sonoshift_format": FORMAT})
        sums = {name: file_digest(tmp / name) for name in (MODEL_FILE, TRAIN_FILE)}
        (tmp / STATE_FILE).write_text(json.dumps({**state, "checksums": sums}, indent=1), encoding="utf-8")
    return final


SELECTED = "selected"  # checkpoints/selected: the checkpoint inference uses, written after training (methods.select)


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(_STEP_DIR.match(p.name).group(1)))  # type: ignore[union-attr]


def find_checkpoint(path: str | Path, selected: bool = True) -> Path:
    """A checkpoint folder or model file for ``path``: a checkpoint folder, a run folder (the checkpoint named by
    its ``checkpoints/selected`` when ``selected`` and present, e.g. ``methods.select``; else its latest) or a
    ``model.safetensors`` file. Raises SonoshiftError naming ``path`` otherwise."""
    path = Path(path)
    if path.is_file():
        if path.suffix != ".safetensors":
            raise SonoshiftError(f"model {path} is not a .safetensors file or a checkpoint folder.")
        return path
    if not path.exists():
        raise SonoshiftError(f"model {path} does not exist.")
    if (path / MODEL_FILE).is_file():
        return path
    chosen = path / "checkpoints" / SELECTED
    if selected and chosen.is_file():
        cand = path / "checkpoints" / chosen.read_text(encoding="utf-8").strip()
        if (cand / MODEL_FILE).is_file():
            return cand
    latest = path / "checkpoints" / "latest"
    if latest.is_file():
        cand = path / "checkpoints" / latest.read_text(encoding="utf-8").strip()
        if (cand / MODEL_FILE).is_file():
            return cand
    found = list_checkpoints(path)
    if found:
        return found[-1]
    raise SonoshiftError(f"model {path} holds no sonoshift checkpoint (expected {MODEL_FILE} or checkpoints/).")


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors`` in name order (independent of file layout)."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].detach().to("cpu").contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")  # 0-dim too (BatchNorm)
    return h.hexdigest()


def verify_files(ckpt_dir: Path, names: tuple[str, ...] = (MODEL_FILE, TRAIN_FILE)) -> None:
    """Compare weights files with the checksums state.json recorded when they were written (older checkpoints
    without checksums pass). Raises SonoshiftError naming the damaged file."""
    try:
        sums = json.loads((ckpt_dir / STATE_FILE).read_text(encoding="utf-8")).get("checksums") or {}
    except (OSError, ValueError, AttributeError):
        return  # no readable state.json next to it: the model file's own tensor checksum still applies
    for name in names:
        if name in sums and (ckpt_dir / name).is_file() and file_digest(ckpt_dir / name) != sums[name]:
            raise SonoshiftError(_corrupt(ckpt_dir / name))


def _corrupt(path: Path) -> str:
    return (f"checkpoint file {path} is damaged: its contents do not match the checksum recorded when it was "
            "written (flipped bits or an incomplete copy); use another checkpoint or copy it again.")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            return {k: f.get_tensor(k) for k in f.keys()}, meta  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as e:  # noqa: BLE001 (safetensors raises several private error types)
        raise SonoshiftError(f"checkpoint file {path} cannot be read ({e.__class__.__name__}: {e}).") from None


@dataclass
class ModelCheckpoint:
    """The inference part of a checkpoint: method name, state (config, metadata, step) and weights (CPU)."""

    path: Path
    method: str
    state: dict[str, Any]
    weights: dict[str, torch.Tensor] = field(repr=False)

    def has_module(self, name: str, ema: bool = False) -> bool:
        prefix = f"{'ema' if ema else 'model'}/{name}/"
        return any(k.startswith(prefix) for k in self.weights)

    def module_state(self, name: str, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
        """State dict of module ``name`` (its EMA copy when present and ``prefer_ema``)."""
        for kind in (("ema", "model") if prefer_ema else ("model",)):
            prefix = f"{kind}/{name}/"
            sd = {k[len(prefix) :]: v for k, v in self.weights.items() if k.startswith(prefix)}
            if sd:
                return sd
        raise SonoshiftError(f"checkpoint {self.path} has no weights for module '{name}'.")


def read_model(path: str | Path, *, expected: str = "a model this command takes") -> ModelCheckpoint:
    """Read the model part of a checkpoint (see :func:`find_checkpoint` for what ``path`` may be). ``expected``
    names, in the refusal of a file that is not a sonoshift model, what the caller wanted (e.g. "a translator")."""
    found = find_checkpoint(path)
    model_file = found if found.is_file() else found / MODEL_FILE
    verify_files(model_file.parent, (MODEL_FILE,) if model_file.name == MODEL_FILE else ())
    weights, meta = _read_safetensors(model_file)
    if meta.get("format") == "sonoshift-segmenter":
        raise SonoshiftError(f"{model_file} is a segmenter checkpoint (from `sonoshift segment`), not {expected}.")
    if meta.get("sonoshift_format") != FORMAT or "method" not in meta:
        raise SonoshiftError(f"checkpoint file {model_file} is not {expected} (it has no sonoshift format {FORMAT} "
                             "header).")
    if "weights_sha256" in meta and tensors_digest(weights) != meta["weights_sha256"]:
        raise SonoshiftError(_corrupt(model_file))
    try:
        state = json.loads(meta.get("state", "{}"))
    except json.JSONDecodeError:
        raise SonoshiftError(f"checkpoint file {model_file} has a corrupt state header.") from None
    return ModelCheckpoint(path=found, method=meta["method"], state=state, weights=weights)


def read_full(ckpt_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """Everything needed to resume: (model tensors, train tensors, state dict)."""
    ckpt_dir = Path(ckpt_dir)
    try:
        state = json.loads((ckpt_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise SonoshiftError(f"checkpoint state {ckpt_dir / STATE_FILE} cannot be read ({e.__class__.__name__}).") from None
    verify_files(ckpt_dir)
    model, meta = _read_safetensors(ckpt_dir / MODEL_FILE)
    if "weights_sha256" in meta and tensors_digest(model) != meta["weights_sha256"]:
        raise SonoshiftError(_corrupt(ckpt_dir / MODEL_FILE))
    train, _ = _read_safetensors(ckpt_dir / TRAIN_FILE)
    return model, train, state


def update_metadata(ckpt_dir: str | Path, **items: Any) -> Path:
    """Set ``items`` in the ``metadata`` of the checkpoint folder ``ckpt_dir`` (its state.json and the state in
    its model file's header, so a model file copied alone keeps them), e.g. a choice made after training
    (``methods.output_gamma``). The weights are read (and checked) by ``read_full`` and written back unchanged; the
    folder is rewritten atomically with fresh checksums. Returns ``ckpt_dir``."""
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / MODEL_FILE).is_file() or not (ckpt_dir / STATE_FILE).is_file():
        raise SonoshiftError(f"{ckpt_dir} is not a checkpoint folder ({MODEL_FILE} and {STATE_FILE}).")
    model, train, state = read_full(ckpt_dir)
    state.setdefault("metadata", {}).update(items)
    return _write_folder(ckpt_dir, model, train, state)


def load_module(ckpt: ModelCheckpoint, name: str, module: nn.Module, prefer_ema: bool = True) -> nn.Module:
    """Copy module ``name``'s weights from ``ckpt`` into ``module`` (strict), with one clear error on mismatch."""
    sd = ckpt.module_state(name, prefer_ema)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "mismatch"
        raise SonoshiftError(f"checkpoint {ckpt.path}: weights of '{name}' do not fit the model ({first}).") from None
    return module
