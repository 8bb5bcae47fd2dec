"""The one explicit training loop shared by every method (contract: docs/engine.md).

Reads top to bottom: pick the step plan, restore a checkpoint when resuming, then for each step fetch this
rank's slice of the global batch, set the learning rate, let the method run its step, update EMAs, log, and
checkpoint. Ctrl-C finishes the current step, saves and returns.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, Self

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

import sonoshift
from sonoshift.atomic import atomic_write_text, remove_stale
from sonoshift.config import NonNegFloat, NonNegInt, PosFloat, PosInt, Range, Seed, Validated
from sonoshift.engine import checkpoint as ckpt_io
from sonoshift.engine.device import autocast as make_autocast
from sonoshift.engine.device import resolve_precision
from sonoshift.engine.distributed import (
    all_reduce_grads,
    all_reduce_mean,
    barrier,
    broadcast_modules,
    dist_info,
)
from sonoshift.engine.ema import EMA
from sonoshift.engine.logging import RunLogger
from sonoshift.engine.schedules import constant_then_linear, decay_steps
from sonoshift.errors import SonoshiftError
from sonoshift.progress import make_progress


@dataclass(frozen=True)
class EngineConfig(Validated):
    """Engine settings (YAML section ``train:``). ``batch_size`` is the GLOBAL batch per optimiser step =
    micro-batch x ``accum_steps`` x number of processes. ``decay_epochs``: the last epochs (as a fraction of
    ``epochs``) decay the learning rate linearly to 0. ``max_steps`` > 0 replaces epochs x steps per epoch.
    ``threads`` > 0 sets torch's CPU threads per process at the entry point (0 keeps torch's default; on a
    CPU shared with other jobs 1 thread per process avoids thread oversubscription, often 5-10x faster)."""

    seed: Seed = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    batch_size: PosInt = 1
    accum_steps: PosInt = 1
    epochs: PosInt = 1
    decay_epochs: NonNegInt = 0
    max_steps: NonNegInt = 0
    lr: PosFloat = 2e-4
    beta1: Annotated[float, Range(0, 1, hi_open=True)] = 0.5
    beta2: Annotated[float, Range(0, 1, hi_open=True)] = 0.999
    grad_clip: NonNegFloat = 0.0
    ema_decay: Annotated[float, Range(0, 1, hi_open=True)] = 0.0
    ema_warmup: bool = False
    checkpoint_every: NonNegInt = 500
    keep_last: NonNegInt = 3
    log_every: PosInt = 10
    image_every: NonNegInt = 500
    num_workers: NonNegInt = 0
    threads: NonNegInt = 0
    channels_last: bool = False
    compile: bool = False
    tensorboard: bool = True


class Method(Protocol):
    """What the loop needs from a method (docs/engine.md §1). The hooks after ``train_step`` are part of the
    contract; :class:`MethodBase` gives each its default, so the loop never asks whether a method has one."""

    name: str
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema: dict[str, EMA]

    def train_step(self, batch: dict[str, Any], ctx: StepContext) -> dict[str, float]: ...

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    def load_extra_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None: ...

    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...

    def lr_factors(self, step: int, total_steps: int) -> dict[str, float] | None: ...

    def metadata(self) -> dict[str, Any]: ...


class MethodBase:
    """Defaults of the optional hooks of :class:`Method`: no extra state, no sample grid, the loop's LR schedule
    (``lr_factors`` None), no method metadata. Methods subclass it and override what they use."""

    def extra_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors (saved under ``extra/``) and JSON state the method needs for exact resume."""
        return {}, {}

    def load_extra_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` saved."""

    def sample(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """TensorBoard rows (name -> (B,1,H,W) in [-1,1]); {} logs no images."""
        return {}

    def lr_factors(self, step: int, total_steps: int) -> dict[str, float] | None:
        """Per-optimiser LR factors; None: the loop's constant-then-linear schedule (docs/engine.md §3)."""
        return None

    def metadata(self) -> dict[str, Any]:
        """JSON facts for inference stored in every checkpoint (domains, image size, ...)."""
        return {}


@dataclass
class StepContext:
    """Everything a method's ``train_step`` may use from the engine (docs/engine.md §1)."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    accum_steps: int
    rank: int
    world_size: int
    seed: int
    channels_last: bool
    grad_clip: float
    optimizers: dict[str, torch.optim.Optimizer]
    scaler: torch.amp.GradScaler | None
    step: int = 0
    epoch: int = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the run's precision (a no-op in fp32)."""
        return make_autocast(self.device, self.autocast_dtype)

    def micro_batches(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Split every tensor of ``batch`` on dim 0 into ``accum_steps`` equal parts."""
        if self.accum_steps == 1:
            return [batch]
        parts: list[dict[str, Any]] = [{} for _ in range(self.accum_steps)]
        for k, v in batch.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0:
                for p, chunk in zip(parts, v.chunk(self.accum_steps, 0)):
                    p[k] = chunk
            else:
                for p in parts:
                    p[k] = v
        return parts

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss / accum_steps`` (through the fp16 grad scaler when active)."""
        loss = loss / self.accum_steps
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()

    def optimizer_step(self, name: str) -> None:
        """Average grads over ranks, unscale, clip (grad_clip > 0), step optimizer ``name``, zero its grads."""
        opt = self.optimizers[name]
        params = [p for g in opt.param_groups for p in g["params"]]
        all_reduce_grads(params, self.world_size)
        if self.scaler is not None:
            self.scaler.unscale_(opt)
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(opt)
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)

    def to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Move tensors to the device; 4-D float tensors to channels_last when enabled."""
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.channels_last and v.dim() == 4 and v.is_floating_point():
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out


@dataclass
class TrainResult:
    """How a run ended: completed steps, epoch, last checkpoint folder, last logged losses, interrupted flag."""

    step: int
    epoch: int
    checkpoint: Path | None
    losses: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False
    steps_per_epoch: int = 0


class _StepPlan:
    """Deterministic data order: per epoch a permutation seeded by (seed, epoch); rank r takes the r-th
    contiguous slice of every global batch; the last incomplete batch is dropped."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world_size: int) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world = rank, world_size
        self.per_rank = batch_size // world_size
        self.steps_per_epoch = n // batch_size

    def indices(self, epoch: int, start: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        out = []
        for i in range(start, self.steps_per_epoch):
            lo = i * self.batch_size + self.rank * self.per_rank
            out.append(perm[lo : lo + self.per_rank])
        return out


class _Interrupt:
    """First SIGINT sets a flag (the loop saves after the current step); a second one raises at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _batches(dataset: Dataset, index_lists: list[list[int]], num_workers: int) -> Iterator[dict[str, Any]]:
    if num_workers > 0:
        yield from DataLoader(dataset, batch_sampler=index_lists, num_workers=num_workers, collate_fn=default_collate)
    else:
        for idx in index_lists:
            yield default_collate([dataset[i] for i in idx])


def _record_initial_lr(method: Method) -> None:
    for opt in method.optimizers.values():
        for g in opt.param_groups:
            g.setdefault("initial_lr", g["lr"])


def _lr_factors(method: Method, step: int, total: int, decay: int) -> dict[str, float]:
    factors = method.lr_factors(step, total)
    if factors is not None:
        return factors
    f = constant_then_linear(step, total, decay)
    return {name: f for name in method.optimizers}


def _save(
    method: Method, out_dir: Path, step: int, epoch: int, step_in_epoch: int, full_config: dict, cfg: EngineConfig,
    scaler: torch.amp.GradScaler | None, stamp: dict[str, Any], training_split: dict | None = None,
) -> Path:
    model: dict[str, torch.Tensor] = {}
    for name, m in method.modules.items():
        model.update(ckpt_io.module_tensors(f"model/{name}", m.state_dict()))
    for name, e in method.ema.items():
        model.update(ckpt_io.module_tensors(f"ema/{name}", e.state_dict()))
    train: dict[str, torch.Tensor] = {}
    optim_json = {}
    for name, opt in method.optimizers.items():
        t, j = ckpt_io.optimizer_to_saved(name, opt)
        train.update(t)
        optim_json[name] = j
    rng_t, rng_j = ckpt_io.rng_to_saved()
    train.update(rng_t)
    extra_t, extra_j = method.extra_state()
    train.update({f"extra/{k}": ckpt_io._cpu(v) for k, v in extra_t.items()})
    state = {
        "format": ckpt_io.FORMAT,
        "method": method.name,
        "sonoshift_version": sonoshift.__version__,
        "step": step,
        "epoch": epoch,
        "step_in_epoch": step_in_epoch,
        "world_size": dist_info().world_size,
        "config": full_config,
        "metadata": {**stamp, **method.metadata()},
        "training_split": training_split,  # hash of the patient lists + hashed training patients (leakage checks)
        "optimizers": optim_json,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_j,
        "extra": extra_j,
    }
    return ckpt_io.write_checkpoint(out_dir, step, model=model, train=train, state=state, keep_last=cfg.keep_last)


def _restore(method: Method, ckpt_dir: Path, scaler: torch.amp.GradScaler | None) -> dict[str, Any]:
    model, train, state = ckpt_io.read_full(ckpt_dir)
    if state.get("method") != method.name:
        raise SonoshiftError(f"checkpoint {ckpt_dir} is a '{state.get('method')}' run, not '{method.name}'.")
    fake = ckpt_io.ModelCheckpoint(path=ckpt_dir, method=method.name, state=state, weights=model)
    for name, m in method.modules.items():
        ckpt_io.load_module(fake, name, m, prefer_ema=False)
    for name, e in method.ema.items():
        e.load_state_dict(fake.module_state(name, prefer_ema=True))
        e.num_updates = int(state.get("step", 0))  # one EMA update per step: the warm-up resumes exactly
    for name, opt in method.optimizers.items():
        ckpt_io.optimizer_from_saved(name, opt, train, state["optimizers"][name])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    extra_t = {k[len("extra/") :]: v for k, v in train.items() if k.startswith("extra/")}
    method.load_extra_state(extra_t, state.get("extra", {}))
    ckpt_io.rng_from_saved(train, state.get("rng", {}))
    return state


def _check_run_folder(out_dir: Path) -> None:
    """A new run writes config.yaml, log.jsonl and checkpoints/ into ``out_dir``: refuse a folder holding files
    that a sonoshift training run did not write (an earlier run's folder is handled by the checkpoint check)."""
    from sonoshift.outputs import read_stamp

    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return
    if not out_dir.is_dir():
        raise SonoshiftError(f"{out_dir} exists and is a file, not a run folder; choose another --out.")
    stamp = read_stamp(out_dir)
    ours = stamp is not None and stamp.kind == "training run"
    legacy = (out_dir / "config.yaml").is_file() and ((out_dir / "log.jsonl").is_file() or (out_dir / "checkpoints").is_dir())
    if not (ours or legacy):
        raise SonoshiftError(f"{out_dir} already holds files that a sonoshift training run did not write; choose "
                             "another --out (nothing was changed).")
def _image_size(dataset: Dataset) -> list[int] | None:
    """(H, W) of the first image tensor (C, H, W) of ``dataset[0]``; None when it has none."""
    for v in dataset[0].values():
        if isinstance(v, torch.Tensor) and v.dim() == 3:
            return [int(v.shape[-2]), int(v.shape[-1])]
    return None


def _fmt(losses: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3g}" for k, v in list(losses.items())[:6])


def train(
    method: Method,
    dataset: Dataset,
    cfg: EngineConfig,
    out_dir: str | Path,
    *,
    full_config: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    sample_batch: dict[str, Any] | None = None,
    stamp: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``method`` on ``dataset`` into the run folder ``out_dir`` (layout: docs/engine.md §4).

    ``dataset[i]`` returns a dict of tensors/ints; ``dataset.set_epoch(e)`` is called each epoch when present.
    With ``resume`` the latest checkpoint of ``out_dir`` is restored and training continues exactly where it
    stopped (same data order, RNG states, optimizer and method state). ``stamp``: what every checkpoint's
    metadata records about the data (``engine.stamp.dataset_stamp``); the image size of ``dataset[0]`` is added
    when the method's metadata does not give one. Returns a :class:`TrainResult`.
    """
    out_dir = Path(out_dir)
    info = dist_info()
    main = info.is_main
    full_config = full_config or {}
    if cfg.batch_size % info.world_size or (cfg.batch_size // info.world_size) % cfg.accum_steps:
        raise SonoshiftError(
            f"train.batch_size {cfg.batch_size} must be divisible by {info.world_size} processes x "
            f"train.accum_steps {cfg.accum_steps}."
        )
    plan = _StepPlan(len(dataset), cfg.batch_size, cfg.seed, info.rank, info.world_size)
    if plan.steps_per_epoch == 0:
        raise SonoshiftError(f"the training set has {len(dataset)} images, fewer than train.batch_size {cfg.batch_size}.")
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * plan.steps_per_epoch
    decay = decay_steps(total, cfg.epochs, cfg.decay_epochs)
    stamp = {**(stamp or {}), "image_size": _image_size(dataset)}
    device = next(next(iter(method.modules.values())).parameters()).device
    dtype = resolve_precision(cfg.precision, device)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 and device.type == "cuda" else None
    _record_initial_lr(method)

    if main:  # a checkpoint half-written by a killed run: its owner is dead, so remove it
        remove_stale(out_dir / "checkpoints")
    if main and not resume:
        _check_run_folder(out_dir)
    if main:  # a choice among the checkpoints of a run that now trains on is redone after it (methods.select)
        (out_dir / "checkpoints" / ckpt_io.SELECTED).unlink(missing_ok=True)
    existing = ckpt_io.list_checkpoints(out_dir)
    step = 0
    if resume:
        if not existing:
            raise SonoshiftError(f"cannot resume: {out_dir} holds no checkpoint.")
        latest = ckpt_io.find_checkpoint(out_dir, selected=False)
        step = int(_restore(method, latest, scaler)["step"])
    elif existing:
        raise SonoshiftError(f"{out_dir} already holds a training run; pass --resume or choose another --out.")
    else:
        broadcast_modules(method.modules)
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (out_dir / ".sonoshift.json").is_file():
            from sonoshift.outputs import write_stamp

            write_stamp(out_dir, "training run", "")
        if full_config:
            atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(full_config, sort_keys=False))
    barrier()
    logger = RunLogger(out_dir, enabled=main, tensorboard=cfg.tensorboard, resume_step=step if resume else None)
    ctx = StepContext(
        device=device, autocast_dtype=dtype, accum_steps=cfg.accum_steps, rank=info.rank,
        world_size=info.world_size, seed=cfg.seed, channels_last=cfg.channels_last, grad_clip=cfg.grad_clip,
        optimizers=method.optimizers, scaler=scaler,
    )
    if sample_batch is None and main and cfg.image_every > 0:
        sample_batch = default_collate([dataset[i] for i in range(min(4, len(dataset)))])

    last_ckpt: Path | None = None
    losses: dict[str, float] = {}
    interrupted = False
    t_last, n_last = time.perf_counter(), 0
    bar = make_progress() if (progress and main) else None
    try:
        with _Interrupt() as stop, (bar if bar is not None else contextlib.nullcontext()):
            task = bar.add_task(method.name, total=total, completed=step, info="") if bar is not None else None
            while step < total and not interrupted:
                epoch, start = divmod(step, plan.steps_per_epoch)
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)
                for batch in _batches(dataset, plan.indices(epoch, start), cfg.num_workers):
                    ctx.step, ctx.epoch = step, epoch
                    factors = _lr_factors(method, step, total, decay)
                    for name, opt in method.optimizers.items():
                        for g in opt.param_groups:
                            g["lr"] = g["initial_lr"] * factors.get(name, 1.0)
                    step_losses = method.train_step(ctx.to_device(batch), ctx)
                    if scaler is not None:
                        scaler.update()
                    for name, e in method.ema.items():
                        e.update(method.modules[name])
                    step += 1
                    n_last += cfg.batch_size
                    if step % cfg.log_every == 0 or step == total:
                        losses = all_reduce_mean(step_losses, device, info.world_size)
                        now = time.perf_counter()
                        lr = next(iter(method.optimizers.values())).param_groups[0]["lr"]
                        logger.scalars(step, {**losses, "lr": lr, "epoch": epoch, "images_per_s": n_last / max(now - t_last, 1e-9), "time": time.time()})
                        t_last, n_last = now, 0
                    if main and cfg.image_every > 0 and step % cfg.image_every == 0 and sample_batch is not None:
                        with torch.no_grad():
                            grid = method.sample(ctx.to_device(sample_batch))
                        if grid:
                            logger.images(step, grid)
                    if bar is not None:
                        bar.update(task, completed=step, info=_fmt(step_losses))
                    done = step >= total
                    if info.world_size > 1:  # every rank must agree to stop after the same step
                        flag = all_reduce_mean({"stop": float(stop.requested)}, device, info.world_size)
                        stop.requested = flag["stop"] > 0
                    if stop.requested or done or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0):
                        if main:
                            last_ckpt = _save(method, out_dir, step, step // plan.steps_per_epoch,
                                              step % plan.steps_per_epoch, full_config, cfg, scaler, stamp,
                                              getattr(dataset, "split_record", None))
                        barrier()
                    if stop.requested and not done:
                        interrupted = True
                    if done or interrupted:
                        break
    finally:
        logger.close()
    if not losses and "step_losses" in locals():
        losses = step_losses
    return TrainResult(step=step, epoch=step // plan.steps_per_epoch, checkpoint=last_ckpt, losses=losses,
                       interrupted=interrupted, steps_per_epoch=plan.steps_per_epoch)


__all__ = ["EngineConfig", "Method", "MethodBase", "StepContext", "TrainResult", "train"]
