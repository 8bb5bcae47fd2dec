"""Every code block of the README runs, as written, on tiny inputs.

The blocks are taken from README.md; the only changes are the listed size substitutions (fewer patients, smaller
frames and networks, one training step), each of which must apply, so a README edit that drops or changes one
fails here instead of silently testing something else.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README, flags=re.S | re.M)

TINY_SIM = "--patients 3 --size 64 --frames-per-sweep 2 --sweeps tr-mid --workers 1 --quiet"
TINY_CG = "model.ngf=4 model.n_blocks=1 model.ndf=4 model.d_layers=2 data.size=32 train.max_steps=1 train.tensorboard=false -q"
TINY_DIFF = ("generator.ch=8 generator.ch_mult=[1,2] generator.attn_resolutions=[8] generator.nz=4 "
             "generator.z_emb_dim=8 generator.t_emb_dim=8 discriminator.ch=8 discriminator.ch_mult=[1,2] "
             "discriminator.t_emb_dim=8 discriminator.mbstd_group=2 schedule.num_steps=2 data.size=32 "
             "train.batch_size=2 train.max_steps=1 train.tensorboard=false -q")
SHELL_TINY = {  # README text -> the same command on tiny inputs
    "--patients 12 ": f"{TINY_SIM} ",
    "resize.size=128 split.seed=3": "resize.size=32 split.seed=3 -q",
    "-o runs/cg train.lr=1e-4": f"-o runs/cg train.lr=1e-4 {TINY_CG}",
    "-o runs/ddgan": f"-o runs/ddgan {TINY_DIFF}",
    "-o runs/cascade\n": f"-o runs/cascade {TINY_DIFF}\n",
    "--samples 8": "--samples 2 -q",
    "--samples 4": "--samples 2 -q",
    "sonoshift evaluate runs/eval/cascade": "sonoshift evaluate runs/eval/cascade lpips=none -q",
    "--out report/": "--out report/ grid_frames=1",
    "sonoshift demo ": "sonoshift demo --help >/dev/null ",  # the whole demo is tests/test_demo_e2e.py
}
PYTHON_TINY = {
    "patients=12, ": "patients=3, size=64, frames_per_sweep=2, sweeps=('tr-mid',), contact_sheet=False, ",
    '"resize.size=128"': '"resize.size=32"',
    'load_config(CycleGANConfig, "cpu/cyclegan")': 'load_config(CycleGANConfig, "cpu/cyclegan", ' + repr(
        TINY_CG.replace(" -q", "").split()) + ")",
    '"runs/api_cg")\n': '"runs/api_cg", progress=False)\n',
    "range(8)": "range(2)",
}


def tiny(text: str, subs: dict[str, str]) -> str:
    for old, new in subs.items():
        assert old in text, f"README code changed: {old!r} is no longer there (update tests/test_readme.py)"
        text = text.replace(old, new)
    return text


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "COLUMNS": "100"}


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert [lang for lang, _ in BLOCKS] == ["bash", "bash", "python"]


def test_make_targets_exist() -> None:
    for line in BLOCKS[0][1].splitlines():
        target = line.split("#")[0].split()[1]
        r = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def inputs(cwd: Path) -> None:
    """clip.mp4, scan.dcm and frames/ of the usage block: tiny fan-shaped cine-loops."""
    sys.path.insert(0, str(Path(__file__).parent))
    from prep_synth import make_video, write_mp4
    from test_readers import make_dicom, save_dicom

    write_mp4(cwd / "clip.mp4", make_video(4, seed=1))
    save_dicom(make_dicom(make_video(3, seed=2), "MONOCHROME2", frames=3), cwd / "scan.dcm")
    (cwd / "frames").mkdir()
    import cv2

    for i, f in enumerate(make_video(3, seed=3)):
        cv2.imwrite(str(cwd / "frames" / f"{i:03d}.png"), f)


@pytest.mark.slow
def test_usage_block_runs(tmp_path: Path) -> None:
    inputs(tmp_path)
    script = "set -euo pipefail\nsonoshift() { %s -m sonoshift \"$@\"; }\n%s" % (
        sys.executable, tiny(BLOCKS[1][1], SHELL_TINY))
    r = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (tmp_path / "harmonized/cg/clip.mp4").is_file() and (tmp_path / "harmonized/cg/scan.mp4").is_file()
    assert (tmp_path / "harmonized/cascade/uncertainty/clip.mp4").is_file()
    assert (tmp_path / "runs/eval/cascade/metrics.csv").is_file() and (tmp_path / "report/index.html").is_file()


@pytest.mark.slow
def test_python_block_runs(tmp_path: Path) -> None:
    code = tiny(BLOCKS[2][1], PYTHON_TINY)
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    values = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", r.stdout)]
    assert len(values) == 4 and all(np.isfinite(values))  # SSIM and PSNR of 2 pairs


def test_the_tiny_substitutions_still_match_the_readme() -> None:
    tiny(BLOCKS[1][1], SHELL_TINY)
    tiny(BLOCKS[2][1], PYTHON_TINY)
