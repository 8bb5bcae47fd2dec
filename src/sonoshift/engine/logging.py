"""Run logging: JSON lines (log.jsonl) and TensorBoard scalars and image grids (rank 0 only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch


def image_grid(rows: dict[str, torch.Tensor], pad: int = 2) -> torch.Tensor:
    """Stack named batches (B,1,H,W) in [-1,1] as grid rows -> (1, H', W') float in [0, 1] for TensorBoard.

    All batches must share H and W; a row holds the batch's images left to right, ``pad`` pixels apart.
    """
    batches = [b.detach().float().cpu().clamp(-1, 1) for b in rows.values()]
    n = max(b.shape[0] for b in batches)
    h, w = batches[0].shape[-2:]
    grid = torch.zeros(1, len(batches) * (h + pad) + pad, n * (w + pad) + pad)
    for r, b in enumerate(batches):
        for c in range(b.shape[0]):
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[:, y : y + h, x : x + w] = (b[c, :1] + 1) / 2
    return grid


class RunLogger:
    """Writes ``log.jsonl`` and (optionally) TensorBoard events under ``out_dir/tb``; inert when disabled."""

    def __init__(self, out_dir: Path, *, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None):
        self.enabled = enabled
        self.path = Path(out_dir) / "log.jsonl"
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            # Lines written after the checkpoint by a crashed run are dropped; they will be recomputed.
            keep = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if _step_of(ln) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
        elif resume_step is None and self.path.exists():
            self.path.unlink()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(out_dir) / "tb"), purge_step=resume_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Append one JSON line {step, **values} and the same scalars to TensorBoard."""
        if not self.enabled:
            return
        clean = {k: (float(v) if isinstance(v, (int, float)) and math.isfinite(float(v)) else v) for k, v in values.items()}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **clean}) + "\n")
        if self.writer is not None:
            for k, v in clean.items():
                if isinstance(v, float) and k not in ("time", "epoch"):
                    self.writer.add_scalar(k if "/" in k or k == "lr" else f"loss/{k}", v, step)

    def images(self, step: int, rows: dict[str, torch.Tensor]) -> None:
        """One TensorBoard image grid (rows = named batches) under ``samples``."""
        if self.enabled and self.writer is not None and rows:
            self.writer.add_image("samples", image_grid(rows), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", -1))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return -1
