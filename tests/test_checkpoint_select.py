"""Choosing a diffusion translator's checkpoint without ground truth (methods.select, issue 12): the rule on
hand values, the structure score against LNCC's own properties, and a trained run whose inference uses the chosen
checkpoint while resuming continues from the latest."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_ddgan_method import TINY_DDGAN, tiny_run  # noqa: F401  (the fixture is re-exported)

from sonoshift.config import load_config
from sonoshift.engine.checkpoint import find_checkpoint, list_checkpoints
from sonoshift.errors import SonoshiftError
from sonoshift.inference.translate import to_signed
from sonoshift.methods import load_translator
from sonoshift.methods.ddgan import DDGANConfig, train_ddgan
from sonoshift.methods.select import checkpoint_scores, choose, evenly, structure_kept
from sonoshift.metrics.lncc import lncc


def test_choose_is_the_last_checkpoint_at_or_above_the_floor_else_the_first():
    assert choose([100, 200, 300], [0.99, 0.985, 0.97], 0.98) == 200
    assert choose([100, 200, 300], [0.97, 0.99, 0.95], 0.98) == 200  # not monotone: the last one that keeps it
    assert choose([100, 200, 300], [0.99, 0.99, 0.98], 0.98) == 300  # the floor itself is kept
    assert choose([100, 200, 300], [0.90, 0.95, 0.97], 0.98) == 100  # none: the earliest, nearest its anchor
    assert choose([100, 200], [0.99, float("nan")], 0.98) == 100  # NaN never qualifies
    with pytest.raises(SonoshiftError, match="one score per checkpoint"):
        choose([100, 200], [0.99], 0.98)
    with pytest.raises(SonoshiftError, match="one score per checkpoint"):
        choose([100, 200], [0.99, 0.99], 0.98, [0.0], 1.0)
    # a brightening above the limit rules a checkpoint out as a low structure score does
    assert choose([100, 200, 300], [0.99, 0.99, 0.99], 0.98, [0.0, 0.3, 2.3], 1.0) == 200
    assert choose([100, 200, 300], [0.99, 0.99, 0.99], 0.98, [-0.4, -3.8, -5.3], 1.0) == 300  # darkening is fine
    assert choose([100, 200, 300], [0.99, 0.99, 0.97], 0.98, [1.5, 2.0, 0.0], 1.0) == 100  # none: the first
    assert choose([100, 200], [0.99, 0.99], 0.98, [0.0, float("nan")], 1.0) == 100
    assert choose([100, 200], [0.99, 0.99], 0.98, [0.0, 9.0]) == 200  # no limit given: brightening is ignored
    assert evenly(10, 3).tolist() == [0, 4, 9] and evenly(2, 5).tolist() == [0, 1] and evenly(0, 4).size == 0


class _Fake:
    """A translator whose base image is its input and whose output is ``fn(input)``."""

    def __init__(self, fn):
        self.fn = fn

    def base(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.fn(x)


def test_structure_kept_ignores_grey_level_changes_and_sees_moved_structure():
    rng = np.random.default_rng(0)
    frames = rng.gamma(2.0, 30.0, (6, 24, 24)).clip(0, 255).astype(np.uint8)
    masks = np.ones_like(frames, dtype=bool)
    masks[:, :, :4] = False
    # a brightness and contrast change keeps local correlation exactly (LNCC is affine invariant)
    assert structure_kept(_Fake(lambda x: 0.5 * x - 0.2), frames, masks) == pytest.approx(1.0, abs=1e-3)
    # other frames' content (structure moved) keeps almost none; the score is the metric's mean over frames
    perm = torch.tensor([1, 2, 3, 4, 5, 0])
    moved = structure_kept(_Fake(lambda x: x[perm] if len(x) == 6 else x), frames, masks)
    x = to_signed(frames)
    ref = float(lncc((x[perm] + 1) / 2, (x + 1) / 2, torch.from_numpy(masks)[:, None]).mean())
    assert moved == pytest.approx(ref, abs=1e-6) and abs(moved) < 0.2


def test_brightening_is_the_mean_grey_level_change_inside_the_field_of_view():
    rng = np.random.default_rng(1)
    frames = rng.integers(20, 200, (5, 16, 16)).astype(np.uint8)
    masks = np.zeros_like(frames, dtype=bool)
    masks[:, 4:12, 2:14] = True
    # +0.1 in [-1, 1] units is +12.75 grey levels everywhere; an affine change keeps LNCC at 1
    kept, bright = checkpoint_scores(_Fake(lambda x: x + 0.1), frames, masks)
    assert kept == pytest.approx(1.0, abs=1e-3) and bright == pytest.approx(12.75, abs=1e-3)
    # a change outside the field of view does not count; inside, the mean over its pixels (numpy reference)
    ramp = torch.linspace(-0.2, 0.2, 16).view(1, 1, 1, 16)
    _, bright = checkpoint_scores(_Fake(lambda x: x + ramp), frames, masks)
    ref = (np.broadcast_to(np.linspace(-0.2, 0.2, 16) * 127.5, frames.shape))[masks].mean()
    assert bright == pytest.approx(ref, abs=1e-3)


def with_val_split(tiny_run, root):
    """A copy of the tiny dataset under ``root`` whose validation split holds 4 handheld frames (whole-frame
    field of view): the frames the after-training choices read. Returns (data folder, those frames)."""
    data = root / "data"
    shutil.copytree(tiny_run["data"], data)
    val = data / "cache" / "val"
    val.mkdir(parents=True)
    frames = np.load(data / "cache" / "train" / "handheld.npy")[:4]
    np.save(val / "handheld.npy", frames)
    np.save(val / "handheld.mask.npy", np.full(frames.shape, 255, np.uint8))
    return data, frames


def test_a_trained_run_uses_its_selected_checkpoint_and_resumes_from_the_latest(tiny_run, tmp_path):
    data, frames = with_val_split(tiny_run, tmp_path)
    over = [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "train.checkpoint_every=1", "train.keep_last=0"]
    run = tmp_path / "run"
    cfg = load_config(DDGANConfig, None, [*over, "select_floor=1.0"])  # no trained checkpoint keeps LNCC 1 exactly
    result = train_ddgan(data, cfg, run, progress=False)
    ckpts = list_checkpoints(run)
    assert [c.name for c in ckpts] == ["step_00000001", "step_00000002", "step_00000003"]
    # the scores, recomputed here with the metric on each checkpoint's own translator
    x = to_signed(frames)
    m = torch.ones_like(x, dtype=torch.bool)
    rows = (run / "selection.csv").read_text().splitlines()
    assert rows[0] == "step,structure_kept,brightening,selected"
    for c, row in zip(ckpts, rows[1:]):
        tr = load_translator(c)
        out = tr(x, generator=torch.Generator().manual_seed(0))
        ref = float(lncc((out + 1) / 2, (tr.base(x) + 1) / 2, m).mean())
        assert float(row.split(",")[1]) == pytest.approx(ref, abs=1e-4)
        assert ref < 1.0
        assert float(row.split(",")[2]) == pytest.approx(float((out - tr.base(x)).mean()) * 127.5, abs=2e-3)
    chosen = [r.split(",")[0] for r in rows[1:] if r.endswith(",1")]
    assert chosen == ["1"] and result.checkpoint == ckpts[0]  # none reaches the floor: the first checkpoint
    assert find_checkpoint(run) == ckpts[0] and find_checkpoint(run, selected=False) == ckpts[-1]
    # inference loads the selected checkpoint's weights
    a = load_translator(run).G.state_dict()
    b = load_translator(ckpts[0]).G.state_dict()
    c = load_translator(ckpts[-1]).G.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], c[k]) for k in a)
    # training on resumes from the latest checkpoint; the earlier choice goes (here the run keeps its last one)
    cfg2 = load_config(DDGANConfig, None, [*over, "train.max_steps=4"])
    train_ddgan(data, cfg2, run, resume=True, progress=False)
    assert [c.name for c in list_checkpoints(run)][-1] == "step_00000004"
    assert not (run / "checkpoints" / "selected").exists() and find_checkpoint(run).name == "step_00000004"


def test_a_dataset_without_validation_source_frames_keeps_the_latest_checkpoint(tiny_run, tmp_path, capsys):
    cfg = load_config(DDGANConfig, None, [*TINY_DDGAN, f"cyclegan={tiny_run['cg']}", "select_floor=0.98"])
    run = tmp_path / "run"
    result = train_ddgan(tiny_run["data"], cfg, run, progress=False)  # the tiny dataset has no val split
    assert "keeps its latest checkpoint" in " ".join(capsys.readouterr().err.split())  # console: stderr, wrapped
    assert not (run / "checkpoints" / "selected").exists() and not (run / "selection.csv").exists()
    assert find_checkpoint(run) == list_checkpoints(run)[-1] == result.checkpoint
