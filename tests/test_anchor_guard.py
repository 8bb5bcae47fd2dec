"""The identity guard of the affine anchors (issue 12, docs/diffusion.md section 22): per-patient histograms and
half-split BCs against independent references, its decision on domains that do and do not differ, and the anchor
a prepared folder gets from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonoshift.data.manifests import write_manifest
from sonoshift.methods.anchor import anchor_from_metadata, anchor_metadata, fit_affine, fit_affine_prepared
from sonoshift.methods.anchor_guard import domain_gap, patient_histograms
from sonoshift.metrics.histogram import bc_from_counts


def _patient(rng: np.random.Generator, n: int, scale: float, shift: float = 0.0) -> np.ndarray:
    """n speckle-like 24x24 frames of one patient: gamma levels, a black band outside the fan."""
    f = (rng.gamma(2.0, scale, (n, 24, 24)) + shift).clip(1, 255).astype(np.uint8)
    f[:, :, :4] = 0
    return f


def _domain(rng: np.random.Generator, patients: int, shift: float) -> tuple[np.ndarray, np.ndarray, list[str]]:
    frames = [_patient(rng, 3, rng.uniform(18.0, 26.0), shift) for _ in range(patients)]
    ids = [f"p{k}" for k in range(patients) for _ in range(3)]
    x = np.concatenate(frames)
    return x, x > 0, ids


def test_patient_histograms_pool_each_patients_field_of_view_pixels():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (5, 8, 8)).astype(np.uint8)
    fov = rng.random((5, 8, 8)) > 0.3
    ids = ["b", "a", "b", "c", "a"]
    got = patient_histograms(x, fov, ids)
    for row, p in enumerate(["b", "a", "c"]):  # order of first appearance
        ks = [k for k, q in enumerate(ids) if q == p]
        want, _ = np.histogram(np.concatenate([x[k][fov[k]] for k in ks]), bins=256, range=(0, 256))
        np.testing.assert_array_equal(got[row], want)
    with pytest.raises(ValueError, match="patient ids"):
        patient_histograms(x, fov, ids[:4])


def test_two_patients_per_domain_give_the_single_patient_bcs():
    # with two patients a half is one patient: within is BC(S1, S2) / BC(T1, T2); between pairs one of each
    rng = np.random.default_rng(1)
    s = rng.integers(1, 50, (2, 256)).astype(np.float64)
    t = rng.integers(1, 50, (2, 256)).astype(np.float64)
    r = domain_gap(s, t, np.random.default_rng(0), splits=8)

    def ref(a, b):
        return float(bc_from_counts(torch.from_numpy(a), torch.from_numpy(b)))

    assert len(r.within) == len(r.between) == 16
    assert set(np.round(r.within[0::2], 12)) == {round(ref(s[0], s[1]), 12)}
    assert set(np.round(r.within[1::2], 12)) == {round(ref(t[0], t[1]), 12)}
    cross = {round(ref(s[i], t[j]), 12) for i in range(2) for j in range(2)}
    assert set(np.round(r.between, 12)) <= cross
    assert r.median_between == pytest.approx(float(np.median(r.between)))
    assert r.within_floor == pytest.approx(float(np.quantile(r.within, 0.25)))


def test_guard_keeps_the_identity_only_when_the_domains_do_not_differ():
    # over 20 draws of 8 patients per domain: one scanner on both sides (patients differ, the domains do not)
    # reads as identity most of the time; another scanner, 35 grey levels brighter, never does
    same = diff = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        counts = [patient_histograms(*_domain(rng, 8, shift)) for shift in (0.0, 0.0, 35.0)]
        r_same = domain_gap(counts[0], counts[1], np.random.default_rng(0))
        r_diff = domain_gap(counts[0], counts[2], np.random.default_rng(0))
        same += r_same.identity
        diff += r_diff.identity
        assert r_diff.median_between < r_diff.within_floor - 0.1
        assert ("identity kept" in r_same.summary()) == r_same.identity
        assert "fitted map kept" in r_diff.summary()
    assert same >= 14 and diff == 0
    # one patient cannot be halved: no reading, the fitted map stays
    assert domain_gap(counts[0][:1], counts[1], np.random.default_rng(0)) is None


def _prepared(tmp_path, source, target) -> str:
    root = tmp_path / "data"
    (root / "cache" / "train").mkdir(parents=True)
    rows = []
    for name, (x, fov, ids) in (("scanner_a", source), ("scanner_b", target)):
        np.save(root / "cache" / "train" / f"{name}.npy", x)
        np.save(root / "cache" / "train" / f"{name}.mask.npy", fov.astype(np.uint8) * 255)
        rows += [{"patient_id": f"{name}-{p}", "domain": name, "video_id": f"v{k}", "frame_index": 0,
                  "path": f"frames/{k}.png", "mask_path": ""} for k, p in enumerate(ids)]
    write_manifest(root / "manifest_train.csv", rows)
    return str(root)


@pytest.mark.parametrize("depth", [False, True])
def test_a_prepared_folder_of_one_scanner_gets_the_identity_anchor(tmp_path, depth):
    rng = np.random.default_rng(3)
    src, tgt = _domain(rng, 8, 0.0), _domain(rng, 8, 0.0)
    root = _prepared(tmp_path, src, tgt)
    a = fit_affine_prepared(root, "train", "scanner_a", "scanner_b", depth=depth, despeckle=True)
    assert a.guard["identity"] is True and a.sigma == 0.0  # no grey map and no despeckle
    x = torch.from_numpy(src[0][:6].astype(np.float32) / 127.5 - 1)[:, None]
    torch.testing.assert_close(a(x), x, rtol=0, atol=1e-5)
    back = anchor_from_metadata(anchor_metadata(a), "scanner_a", "scanner_b", (24, 24))
    assert back.guard == a.guard and back.stats == a.stats
    # without the guard the same folder gets the map fitted to the sampling noise of its patients
    plain = fit_affine_prepared(root, "train", "scanner_a", "scanner_b", depth=depth, guard=False)
    assert plain.guard is None and plain.stats == fit_affine(src[:2], tgt[:2], depth).stats
    assert plain.stats[0] != plain.stats[2]


def test_a_prepared_folder_of_two_scanners_keeps_the_fitted_anchor(tmp_path):
    rng = np.random.default_rng(4)
    src, tgt = _domain(rng, 8, 0.0), _domain(rng, 8, 35.0)
    root = _prepared(tmp_path, src, tgt)
    a = fit_affine_prepared(root, "train", "scanner_a", "scanner_b", depth=True)
    assert a.guard["identity"] is False
    assert a.stats == fit_affine(src[:2], tgt[:2], True).stats


def test_the_depth_affine_baseline_says_when_it_is_the_identity(tmp_path):
    from sonoshift.baselines import make_baseline

    rng = np.random.default_rng(3)
    one, two = _domain(rng, 8, 0.0), _domain(rng, 8, 0.0)
    tr, desc = make_baseline("depth_affine", _prepared(tmp_path / "one", one, two), "scanner_a", "scanner_b", tmp_path)
    x = torch.from_numpy(one[0][:4].astype(np.float32) / 127.5 - 1)[:, None]
    torch.testing.assert_close(tr(x), x, rtol=0, atol=1e-5)
    assert "identity" in desc
    rng = np.random.default_rng(4)
    one, two = _domain(rng, 8, 0.0), _domain(rng, 8, 35.0)
    tr, desc = make_baseline("depth_affine", _prepared(tmp_path / "two", one, two), "scanner_a", "scanner_b", tmp_path)
    assert "identity" not in desc and tr(x).mean() > x.mean() + 0.1
