from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sonoshift.data.frame_select import FrameConfig, equalize_frame_counts, select_frames, target_count
from sonoshift.data.manifests import (
    BASE_COLUMNS,
    build_pairs,
    manifest_columns,
    read_manifest,
    read_pairs,
    strip_domain,
    write_manifest,
    write_pairs,
)
from sonoshift.errors import SonoshiftError


def _row(domain: str, pid: str, vid: str, j: int, **extra) -> dict:
    rel = f"{domain}/{pid}/{vid}/{j:05d}.png"
    return {"patient_id": pid, "domain": domain, "video_id": vid, "frame_index": j, "path": f"frames/{rel}",
            "mask_path": f"masks/{rel}", **extra}


def test_columns_order_and_roundtrip(tmp_path: Path) -> None:
    rows = [
        _row("a", "p1", "v1", 0, plane="head", ga_weeks=24.5, gt_cart_path="aligned/gt_cart/x.png", operator="op1"),
        _row("a", "p1", "v1", 3, label_path="aligned/label_map/y.png", brain_plane="TT"),
    ]
    cols = write_manifest(tmp_path / "m.csv", rows)
    assert cols == [*BASE_COLUMNS, "gt_cart_path", "brain_plane", "operator"]
    assert manifest_columns(rows) == cols
    back = read_manifest(tmp_path / "m.csv")
    assert list(back[0]) == cols
    assert back[0]["ga_weeks"] == "24.5" and back[0]["label_path"] == "" and back[1]["plane"] == ""
    assert [{k: v for k, v in r.items() if v != ""} for r in back] == [
        {k: str(v) for k, v in r.items()} for r in rows
    ]
    np_rows = [_row("a", "p1", "v1", np.int64(2), ga_weeks=np.float64(24.5), n=np.int32(3))]
    write_manifest(tmp_path / "np.csv", np_rows)
    r = read_manifest(tmp_path / "np.csv")[0]
    assert (r["frame_index"], r["ga_weeks"], r["n"]) == ("2", "24.5", "3")  # numpy scalars written as numbers
    (tmp_path / "bad.csv").write_text("patient_id,domain\np,a\n")
    with pytest.raises(SonoshiftError, match="lacks the column 'video_id'"):
        read_manifest(tmp_path / "bad.csv")


def test_strip_domain() -> None:
    assert strip_domain("p01_sweep1_cart", "cart") == "p01_sweep1"
    assert strip_domain("cart-p01", "cart") == "p01"
    assert strip_domain("cartography_p01", "cart") == "cartography_p01"  # only whole tokens
    assert strip_domain("p01", "handheld") == "p01"


def test_real_pairs_when_keys_match(tmp_path: Path) -> None:
    src = [_row("handheld", "p1", f"s{k}_handheld", j) for k in range(2) for j in (0, 4)]
    tgt = [_row("cart", "p1", f"s{k}_cart", j) for k in range(2) for j in (4, 0)]
    pairs = build_pairs(src, tgt, seed=0)
    assert len(pairs) == 4
    for p in pairs:
        assert p["source_path"].replace("handheld", "cart") == p["target_path"]
    write_pairs(tmp_path / "pairs.csv", pairs)
    assert read_pairs(tmp_path / "pairs.csv") == pairs


def test_unpaired_pairs_are_deterministic_and_cycle() -> None:
    src = [_row("a", f"p{i}", "v", 0) for i in range(7)]
    tgt = [_row("b", f"q{i}", "v", 0) for i in range(3)]
    p1 = build_pairs(list(reversed(src)), tgt, seed=1)
    assert p1 == build_pairs(src, list(reversed(tgt)), seed=1)  # independent of input order
    assert [p["source_path"] for p in p1] == sorted(r["path"] for r in src)
    counts = {t: sum(p["target_path"] == t for p in p1) for t in (r["path"] for r in tgt)}
    assert sorted(counts.values()) == [2, 2, 3]  # every target used, cycled to the source length
    # the first len(tgt) pairs use each target exactly once (a permutation)
    assert sorted(p["target_path"] for p in p1[:3]) == sorted(r["path"] for r in tgt)
    seqs = {tuple(p["target_path"] for p in build_pairs(src, tgt, seed=s)) for s in range(6)}
    assert len(seqs) > 1
    assert build_pairs([], tgt) == []


def test_select_frames_properties() -> None:
    rng = np.random.default_rng(0)
    idx = select_frames(50, 12, rng)
    assert idx.shape == (12,) and np.all(np.diff(idx) > 0) and idx.min() >= 0 and idx.max() < 50
    np.testing.assert_array_equal(select_frames(5, 5, rng), np.arange(5))
    np.testing.assert_array_equal(select_frames(5, None, rng), np.arange(5))
    a = select_frames(50, 12, np.random.default_rng(7))
    b = select_frames(50, 12, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_harmonize_to_minimum() -> None:
    lengths = {"a/p1/v1": 30, "a/p2/v1": 12, "b/p3/v1": 17}
    sel = equalize_frame_counts(lengths, FrameConfig(seed=2))
    assert {k: len(v) for k, v in sel.items()} == {k: 12 for k in lengths}
    np.testing.assert_array_equal(sel["a/p2/v1"], np.arange(12))
    again = equalize_frame_counts(dict(reversed(list(lengths.items()))), FrameConfig(seed=2))
    assert all(np.array_equal(sel[k], again[k]) for k in lengths)  # order-independent
    other = equalize_frame_counts(lengths, FrameConfig(seed=3))
    assert not np.array_equal(sel["a/p1/v1"], other["a/p1/v1"])
    # each frame of a long video is about equally likely: mean index ~ (n - 1) / 2 over many seeds
    means = [equalize_frame_counts({"v": 30}, FrameConfig(mode="fixed", count=5, seed=s))["v"].mean() for s in range(400)]
    assert abs(np.mean(means) - 14.5) < 0.6
    assert target_count([4, 9], FrameConfig(mode="all")) is None
    with pytest.raises(SonoshiftError, match="fewer than frames.count=20"):
        equalize_frame_counts(lengths, FrameConfig(mode="fixed", count=20))
