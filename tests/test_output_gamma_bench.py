"""bench/output_gamma.py: which folders of a demo it reads, in seed order, and one clear sentence for a folder
the demo did not write."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from sonoshift.errors import SonoshiftError

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("output_gamma_bench", ROOT / "bench" / "output_gamma.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _demo(folder: Path, base: bool = False) -> Path:
    (folder / "models").mkdir(parents=True)
    if base:
        (folder / "data").mkdir()
        (folder / "models" / "segmenter").mkdir()
    return folder


def test_seed_folders_in_numeric_order_else_the_demo_itself(tmp_path):
    seeds = tmp_path / "full"
    for k in (10, 0, 2):
        _demo(seeds / f"seed_{k}", base=k == 0)
    (seeds / "seed_5").mkdir()  # not finished: no models/
    assert [p.name for p in bench.demo_folders(seeds)] == ["seed_0", "seed_2", "seed_10"]
    single = _demo(tmp_path / "demo", base=True)
    assert bench.demo_folders(single) == [single]


def test_a_folder_the_demo_did_not_write_is_one_sentence(tmp_path):
    with pytest.raises(SonoshiftError, match="is not a finished `sonoshift demo` folder"):
        bench.demo_folders(tmp_path)
    _demo(tmp_path / "half")  # models/ but no data/ or judge
    with pytest.raises(SonoshiftError, match="has no data/ or models/segmenter/"):
        bench.demo_folders(tmp_path / "half")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "output_gamma.py"), "--demo", str(tmp_path / "none")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1 and r.stderr.strip().startswith("error: ") and "Traceback" not in r.stderr
