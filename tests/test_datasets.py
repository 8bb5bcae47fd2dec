from __future__ import annotations

import math
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from prep_synth import make_video
from sonoshift.config import load_config
from sonoshift.data.datasets import IGNORE_INDEX, FrameDataset, UnpairedDataset, signed_to_unit, unit_to_signed
from sonoshift.data.manifests import read_manifest
from sonoshift.data.prepare import PrepareConfig, prepare
from sonoshift.errors import SonoshiftError


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared dataset: domain a (6 patients, 3 frames each), domain b (4 patients) with plane labels,
    and label maps for domain a only."""
    root = tmp_path_factory.mktemp("ds")
    items = []
    rng = np.random.default_rng(0)
    for dom, n in (("a", 6), ("b", 4)):
        for i in range(n):
            pid = f"{dom}{i}"
            np.save(root / f"{pid}.npy", make_video(3, seed=i + (0 if dom == "a" else 50)))
            it = {"path": f"{pid}.npy", "domain": dom, "patient_id": pid, "labels": {"plane": f"plane{i % 2}"}}
            if dom == "a":
                np.save(root / f"{pid}_lab.npy", rng.integers(0, 3, size=(3, 96, 128), dtype=np.uint8))
                it["aligned"] = {"label_map": f"{pid}_lab.npy"}
                it["labels"]["ga_weeks"] = 20.0 + i
            items.append(it)
    (root / "spec.yaml").write_text(yaml.safe_dump({"items": items}))
    out = root / "out"
    prepare([root / "spec.yaml"], out, load_config(PrepareConfig, None, ["resize.size=32"]), progress=False)
    return out


def _png(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_norm_helpers() -> None:
    x = torch.linspace(0, 1, 11)
    torch.testing.assert_close(signed_to_unit(unit_to_signed(x)), x)
    np.testing.assert_allclose(unit_to_signed(np.array([0.0, 0.5, 1.0])), [-1.0, 0.0, 1.0])


def test_unpaired_items_match_the_frames(prepared: Path) -> None:
    ds = UnpairedDataset(prepared, "train", "a", "b", seed=3)
    rows = read_manifest(prepared / "manifest_train.csv")
    src_rows = [r for r in rows if r["domain"] == "a"]
    tgt_rows = [r for r in rows if r["domain"] == "b"]
    assert len(ds) == len(src_rows) == 12
    for i in range(len(ds)):
        it = ds[i]
        assert it["source"].shape == (1, 32, 32) and it["source"].dtype == torch.float32
        assert it["source"].min() >= -1 and it["source"].max() <= 1
        ref = _png(prepared / src_rows[i]["path"]).astype(np.float32) / 127.5 - 1
        np.testing.assert_allclose(it["source"][0].numpy(), ref, atol=1e-6)
        tref = _png(prepared / tgt_rows[it["target_index"]]["path"]).astype(np.float32) / 127.5 - 1
        np.testing.assert_allclose(it["target"][0].numpy(), tref, atol=1e-6)
        assert it["source_index"] == i


def test_unpaired_epoch_pairing(prepared: Path) -> None:
    ds = UnpairedDataset(prepared, "train", "a", "b", seed=3)
    pairing = lambda d: [d[i]["target_index"] for i in range(len(d))]  # noqa: E731
    e0 = pairing(ds)
    n_t = ds.n_target
    assert sorted(e0[:n_t]) == list(range(n_t))  # every target used before any repeats
    ds.set_epoch(1)
    e1 = pairing(ds)
    ds.set_epoch(0)
    assert pairing(ds) == e0  # same (seed, epoch) -> same pairing
    assert pairing(UnpairedDataset(prepared, "train", "a", "b", seed=3)) == e0
    others = []
    for e in range(1, 6):
        ds.set_epoch(e)
        others.append(pairing(ds))
    assert any(o != e0 for o in others) and e1 == others[0]


def test_unpaired_resize_and_loader(prepared: Path) -> None:
    ds = UnpairedDataset(prepared, "train", "a", "b", size=16)
    it = ds[0]
    assert it["source"].shape == (1, 16, 16)
    full = UnpairedDataset(prepared, "train", "a", "b")[0]["source"]
    # antialiased bilinear, as PIL resizes (its BILINEAR filter is antialiased) on the float image
    ref = Image.fromarray(full[0].numpy(), mode="F").resize((16, 16), Image.BILINEAR)
    np.testing.assert_allclose(it["source"][0].numpy(), np.asarray(ref), atol=1e-4)
    clone = pickle.loads(pickle.dumps(ds))  # picklable for DataLoader workers (memory maps reopened)
    torch.testing.assert_close(clone[3]["source"], ds[3]["source"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["source"].shape == (4, 1, 16, 16) and batch["target_index"].shape == (4,)
    with pytest.raises(SonoshiftError, match="packed cache .* does not exist"):
        UnpairedDataset(prepared, "train", "a", "nope")
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_frame_dataset_labels(prepared: Path) -> None:
    ds = FrameDataset(prepared, "train")
    rows = read_manifest(prepared / "manifest_train.csv")
    assert len(ds) == len(rows) and ds.planes == ["plane0", "plane1"]
    for i, r in enumerate(rows):
        it = ds[i]
        ref = _png(prepared / r["path"]).astype(np.float32) / 127.5 - 1
        np.testing.assert_allclose(it["image"][0].numpy(), ref, atol=1e-6)
        np.testing.assert_array_equal(it["mask"][0].numpy(), _png(prepared / r["mask_path"]) / 255)
        assert it["plane"] == r["plane"] and ds.planes[it["plane_index"]] == r["plane"]
        if r["domain"] == "a":
            np.testing.assert_array_equal(it["label_map"].numpy(), _png(prepared / r["label_path"]))
            assert it["label_map"].dtype == torch.int64 and it["ga_weeks"] == float(r["ga_weeks"])
        else:
            assert (it["label_map"] == IGNORE_INDEX).all() and math.isnan(it["ga_weeks"])
    only_b = FrameDataset(prepared, "train", "b", size=16)
    assert {only_b[i]["domain"] for i in range(len(only_b))} == {"b"}
    assert only_b[0]["image"].shape == (1, 16, 16) and only_b[0]["label_map"].shape == (16, 16)
    # without the cache (PNG path) the items are the same
    slow = FrameDataset(prepared, "train", use_cache=False)
    torch.testing.assert_close(slow[5]["image"], ds[5]["image"])
    torch.testing.assert_close(slow[5]["mask"], ds[5]["mask"])
    a_rows = [i for i, r in enumerate(rows) if r["domain"] == "a"]
    torch.testing.assert_close(slow[a_rows[-1]]["label_map"], ds[a_rows[-1]]["label_map"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 1, 32, 32) and len(batch["patient_id"]) == 3
    with pytest.raises(SonoshiftError, match="not a prepared dataset"):
        FrameDataset(prepared.parent, "train")


def test_frame_dataset_checks_leakage(prepared: Path, tmp_path: Path) -> None:
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(prepared, copy)
    splits = json.loads((copy / "splits.json").read_text())
    splits["b"]["test"].append(splits["b"]["train"][0])
    (copy / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(SonoshiftError, match=f"patient '{splits['b']['train'][0]}' leaks"):
        FrameDataset(copy, "train")
