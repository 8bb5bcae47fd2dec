"""Device and precision choice (only entry points call these; library code follows its inputs)."""

from __future__ import annotations

import contextlib
import os

import torch

from sonoshift.errors import SonoshiftError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def select_device(spec: str = "auto") -> torch.device:
    """``auto`` -> cuda (``cuda:LOCAL_RANK`` under torchrun) > mps > cpu; or an explicit ``cpu``/``cuda[:i]``/``mps``."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise SonoshiftError(f"device '{spec}' is not a valid torch device (use auto, cpu, cuda, cuda:1 or mps).") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SonoshiftError(f"device '{spec}' was requested but CUDA is not available on this machine.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise SonoshiftError(f"device '{spec}' was requested but MPS is not available on this machine.")
    return dev


def resolve_precision(spec: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``spec`` on ``device``: None means plain fp32.

    ``auto``: bf16 on CUDA devices that support it (fp16 on older CUDA), fp32 on CPU and MPS (autocast does
    not speed these convolutions up on CPU).
    """
    if spec not in PRECISIONS:
        raise SonoshiftError(f"precision '{spec}' is not one of {', '.join(PRECISIONS)}.")
    if spec == "fp32":
        return None
    if spec == "bf16":
        return torch.bfloat16
    if spec == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype`` on ``device``'s type, or a no-op context when dtype is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
