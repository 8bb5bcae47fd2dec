"""`sonoshift export onnx`: a trained translator as one self-describing ONNX file.

The graph is traced from the translator's own networks (``deploy.graphs``): the generator for CycleGAN and
student models, the sampler unrolled over its N steps with the noise as inputs for DDGAN and cascade models.
Batch, height and width are dynamic (H and W must suit the network: multiples of 4 for the ResNet generator, of
2^(levels - 1) for the U-Net). ``metadata_props`` carry what inference needs besides the weights (keys
``sonoshift.*``, values JSON): method, domains, training image size, the crop/resize geometry of the dataset it
was trained on, the noise spec, checkpoint and step, the sonoshift version, the quantization, and ``training_split``: the training-split records of the model and of
the models it builds on (hash of the dataset's patient lists + hashed training patients, as checkpoints record
them), so `harmonize --dataset` can refuse an exported model on a split it was trained on.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import torch

import sonoshift
from sonoshift.atomic import atomic_write_bytes
from sonoshift.config import to_dict
from sonoshift.deploy.graphs import NoiseSpec, translator_graph
from sonoshift.errors import SonoshiftError

OPSET = 17
META_PREFIX = "sonoshift."
ONNX_EXPORT = "model export (ONNX)"  # the kind of an exported file in its folder's ledger


def _inputs(spec: NoiseSpec, size: tuple[int, int], batch: int = 1) -> tuple[tuple[torch.Tensor, ...], list[str]]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 1, *size), generator=g) * 2 - 1
    if not spec.stochastic:
        return (x,), ["x"]
    from sonoshift.deploy.graphs import draw_noise

    noise, z = draw_noise(spec, batch, size, g)
    return (x, noise, z), ["x", "noise", "z"]


def graph_bytes(module: torch.nn.Module, spec: NoiseSpec, size: tuple[int, int], opset: int = OPSET,
                rewrite: bool = True) -> bytes:
    """Trace ``module`` at ``size`` and return the serialized ONNX model (dynamic batch, height and width), after
    the exact rewrites of ``deploy.rewrite`` (same outputs, faster ops; ``rewrite=False``: as the module is)."""
    from sonoshift.deploy.rewrite import for_export

    module = for_export(module) if rewrite else module
    args, names = _inputs(spec, size)
    dyn: dict[str, dict[int, str]] = {"x": {0: "batch", 2: "height", 3: "width"},
                                      "y": {0: "batch", 2: "height", 3: "width"}}
    if spec.stochastic:
        dyn["noise"] = {0: "batch", 2: "height", 3: "width"}
        dyn["z"] = {0: "batch"}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(module, args, buf, dynamo=False, input_names=names, output_names=["y"],
                          dynamic_axes=dyn, opset_version=opset, do_constant_folding=True)
    return buf.getvalue()


def with_metadata(model_bytes: bytes, meta: dict[str, Any]) -> bytes:
    """``model_bytes`` with ``sonoshift.<key>`` = JSON(value) set in its metadata_props (other keys kept)."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    props = {p.key: p.value for p in model.metadata_props}
    props.update({META_PREFIX + k: json.dumps(v) for k, v in meta.items()})
    del model.metadata_props[:]
    for k, v in sorted(props.items()):
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()


def read_metadata(props: dict[str, str]) -> dict[str, Any]:
    """The ``sonoshift.*`` entries of an ONNX model's metadata map, JSON-decoded, prefix removed."""
    return {k[len(META_PREFIX):]: json.loads(v) for k, v in props.items() if k.startswith(META_PREFIX)}


def translator_metadata(translator: Any, state: dict[str, Any], spec: NoiseSpec, checkpoint: str) -> dict[str, Any]:
    """What travels with the exported graph: method, domains, sizes, geometry, noise spec, provenance, and the
    training-split records (``leakage.training_records`` of ``state``: its own and those of the models it builds on)."""
    from sonoshift.inference.translate import geometry_from_checkpoint
    from sonoshift.leakage import training_records

    size = [int(v) for v in translator.image_size]
    try:
        geo = geometry_from_checkpoint(state, size[0], path=checkpoint)
        geometry = {"crop": to_dict(geo.crop), "resize": to_dict(geo.resize)}
    except SonoshiftError:  # a model that does not know its training crop: harmonize says so when it needs it
        geometry = None
    meta = state.get("metadata") or {}
    return {
        "format": 1,
        "method": translator.method,
        "source_domain": translator.source_domain,
        "target_domain": translator.target_domain,
        "image_size": size,
        "geometry": geometry,
        "noise": {"steps": spec.steps, "nz": spec.nz},
        "inputs": ["x", "noise", "z"] if spec.stochastic else ["x"],
        "checkpoint": checkpoint,
        "step": state.get("step"),
        "config_name": meta.get("config_name"),
        "sonoshift_version": sonoshift.__version__,
        "quantization": "none",
        "training_split": training_records(state),
    }


def export_bytes(model: str | Path, *, opset: int = OPSET, **translator_options: Any) -> bytes:
    """The ONNX model (bytes, with metadata) of the translator in checkpoint/run folder ``model``."""
    from sonoshift.engine.checkpoint import read_model
    from sonoshift.methods import load_translator

    ckpt = read_model(model, expected="a translator")
    translator = load_translator(model, device="cpu", **translator_options)
    module, spec = translator_graph(translator)
    size = tuple(int(v) for v in translator.image_size)
    meta = translator_metadata(translator, ckpt.state, spec, str(Path(ckpt.path).resolve()))
    return with_metadata(graph_bytes(module, spec, size, opset), meta)  # type: ignore[arg-type]


def export_onnx(
    model: str | Path,
    out: str | Path,
    *,
    opset: int = OPSET,
    int8: str | None = None,
    calibration: Any = None,
    force: bool = False,
    **translator_options: Any,
) -> Path:
    """Export the translator of checkpoint/run folder ``model`` to the ONNX file ``out`` (written atomically).

    ``int8`` "static" (needs ``calibration``: uint8 frames (N, H, W) or a prepared dataset folder) or "dynamic"
    quantizes the graph (``deploy.quantize``). ``translator_options``: as for ``load_translator`` (CycleGAN:
    ``reverse``). ``out`` follows the output policy of :mod:`sonoshift.outputs`: a file sonoshift did not write is
    refused, an earlier export with other settings is replaced only with ``force``. Returns ``out``.
    """
    from sonoshift.outputs import claim_file, record_file, settings_key

    out = Path(out)
    if out.suffix != ".onnx":
        raise SonoshiftError(f"export target {out} must end in .onnx.")
    cal = str(Path(calibration).resolve()) if isinstance(calibration, (str, Path)) else calibration is not None
    key = settings_key({"model": str(Path(model).resolve()), "opset": opset, "int8": int8, "calibration": cal,
                        "options": translator_options})
    claim_file(out, ONNX_EXPORT, key, force=force)
    data = export_bytes(model, opset=opset, **translator_options)
    if int8:
        from sonoshift.deploy.quantize import quantize_bytes

        data = quantize_bytes(data, int8, calibration)
    atomic_write_bytes(out, data)
    record_file(out, ONNX_EXPORT, key)
    return out


__all__ = ["export_bytes", "export_onnx", "graph_bytes", "read_metadata", "translator_metadata", "with_metadata"]
