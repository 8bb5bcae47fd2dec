"""The identity guard of the affine anchors (issue 12, docs/diffusion.md section 22): per-patient histograms and
half-split BCs against independent references, its decision on domains that do and do not differ, and the anchor
a prepared folder gets from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_ddgan_method import tiny_run  # noqa: F401  (the fixture is re-exported)

from sonoshift.data.manifests import write_manifest
from sonoshift.methods.anchor import (
    anchor_from_metadata,
    anchor_metadata,
    checkpoint_guard,
    fit_affine,
    fit_affine_prepared,
)
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


def _moments(v: np.ndarray, fg: np.ndarray) -> tuple[float, float]:
    return float(v[fg].mean()), float(v[fg].std())


def test_keep_moments_gives_each_image_its_base_images_mean_and_spread():
    from sonoshift.methods.anchor import keep_moments

    rng = np.random.default_rng(5)
    base = rng.uniform(-0.6, 0.4, (3, 1, 12, 12)).astype(np.float32)
    base[:, :, :, :3] = -1.0  # black outside the fan
    y = (0.5 * base + rng.normal(0.2, 0.1, base.shape)).astype(np.float32)
    out = keep_moments(torch.from_numpy(y), torch.from_numpy(base)).numpy()
    fg = ((base + 1) * 127.5) >= 0.5
    for i in range(3):
        assert _moments(out[i], fg[i]) == pytest.approx(_moments(base[i], fg[i]), abs=1e-4)
        # the shape of y's levels is kept: an affine function of y inside the fan
        assert np.corrcoef(out[i][fg[i]], y[i][fg[i]])[0, 1] == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(out[~fg], y[~fg])


def test_a_translator_whose_anchor_the_guard_made_the_identity_keeps_each_frames_levels():
    import onnxruntime as ort

    from sonoshift.deploy.export import graph_bytes
    from sonoshift.deploy.graphs import draw_noise, translator_graph
    from sonoshift.diffusion import ScheduleConfig, schedule_from_config
    from sonoshift.methods.anchor import AffineMatch
    from sonoshift.methods.ddgan import DDGANTranslator
    from sonoshift.models.ddgan_unet import DDGANUNet, UNetConfig

    cfg = UNetConfig(ch=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), nz=4, z_emb_dim=8, t_emb_dim=8,
                     output="residual", zero_init=False)
    torch.manual_seed(0)
    G = DDGANUNet(cfg, image_size=16)  # random init: its correction moves the levels
    stats = ([70.0], [30.0], [70.0], [30.0])
    guarded, fitted = AffineMatch(*stats), AffineMatch(*stats)
    guarded.guard = {"identity": True, "median_between": 0.95, "within_floor": 0.94, "splits": 32}
    schedule = schedule_from_config(ScheduleConfig(num_steps=2))
    trs = [DDGANTranslator(G, schedule, "noise", (16, 16), "s", "t", anchor=a, output_gain=2.0)
           for a in (guarded, fitted)]
    assert [t.keep_moments for t in trs] == [True, False]
    rng = np.random.default_rng(6)
    src = rng.integers(20, 160, (2, 16, 16)).astype(np.uint8)
    src[:, :, :3] = 0
    x = torch.from_numpy(src.astype(np.float32) / 127.5 - 1)[:, None]
    fg = src > 0
    ys = [((t(x, generator=torch.Generator().manual_seed(3)) + 1) * 127.5)[:, 0].numpy() for t in trs]
    for i in range(2):
        assert _moments(ys[0][i], fg[i]) == pytest.approx(_moments(src[i].astype(np.float64), fg[i]), abs=0.05)
        assert abs(_moments(ys[1][i], fg[i])[0] - src[i][fg[i]].mean()) > 1.0  # unguarded: the levels move
    # the exported graph applies it too
    module, spec = translator_graph(trs[0])
    noise, z = draw_noise(spec, 2, (16, 16), torch.Generator().manual_seed(3))
    sess = ort.InferenceSession(graph_bytes(module, spec, (16, 16)))
    got = sess.run(None, {"x": x.numpy(), "noise": noise.numpy(), "z": z.numpy()})[0]
    np.testing.assert_allclose(got, ((torch.from_numpy(ys[0])[:, None] / 127.5) - 1).numpy(), atol=1e-3)


def _with_patients(data, out, same: bool):
    """A copy of the tiny prepared dataset with a manifest naming 3 patients per domain (2 frames each); with
    ``same`` the target frames are a second draw of the source scanner's."""
    import shutil

    shutil.copytree(data, out)
    src = np.load(out / "cache" / "train" / "handheld.npy")
    if same:
        rng = np.random.default_rng(9)
        np.save(out / "cache" / "train" / "cart.npy", rng.permutation(src.reshape(-1)).reshape(src.shape))
    n_tgt = len(np.load(out / "cache" / "train" / "cart.npy"))
    rows = [{"patient_id": f"{d}-{k // 2}", "domain": d, "video_id": f"{d}{k}", "frame_index": 0, "path": "x.png",
             "mask_path": ""} for d, n in (("handheld", len(src)), ("cart", n_tgt)) for k in range(n)]
    write_manifest(out / "manifest_train.csv", rows)
    return out


@pytest.mark.parametrize("same", [False, True])
def test_train_says_what_the_guard_found(tiny_run, capsys, same):  # noqa: F811
    from test_ddgan_method import TINY_DDGAN

    from sonoshift.cli.main import main
    from sonoshift.engine.checkpoint import read_model

    data = _with_patients(tiny_run["data"], tiny_run["root"] / f"guard_data_{same}", same)
    out = tiny_run["root"] / f"cli_dd_guard_{same}"
    with pytest.raises(SystemExit) as ok:
        main(["train", "ddgan", "--data", str(data), "--out", str(out), "--cyclegan", str(tiny_run["cg"]),
              "-q", *TINY_DDGAN, "generator.output=residual", "anchor=depth_affine", "train.max_steps=1"])
    assert ok.value.code == 0
    guard = read_model(out).state["metadata"]["anchor"]["guard"]
    assert checkpoint_guard(out) == guard and checkpoint_guard(tiny_run["cg"]) is None
    assert guard["identity"] is same  # the tiny target is a brightened source unless it is a second draw of it
    said = capsys.readouterr().out
    assert "anchor guard: median between-domain BC" in said
    assert ("identity kept" in said) == same and ("fitted map kept" in said) != same


def test_an_anchored_generator_on_a_guarded_identity_anchor_keeps_each_frames_levels():
    from sonoshift.methods.anchor import AffineMatch
    from sonoshift.models.anchored import anchored_mobile_unet

    stats = ([70.0], [30.0], [70.0], [30.0])
    guarded = AffineMatch(*stats)
    guarded.guard = {"identity": True, "median_between": 0.95, "within_floor": 0.94, "splits": 32}
    torch.manual_seed(0)
    nets = [anchored_mobile_unet(a, 8, 1) for a in (guarded, AffineMatch(*stats))]  # random heads: they move
    nets[1].load_state_dict(nets[0].state_dict())
    rng = np.random.default_rng(7)
    src = rng.integers(20, 160, (2, 16, 16)).astype(np.uint8)
    src[:, :, :3] = 0
    x = torch.from_numpy(src.astype(np.float32) / 127.5 - 1)[:, None]
    with torch.no_grad():
        ys = [((n(x) + 1) * 127.5)[:, 0].numpy() for n in nets]
    fg = src > 0
    for i in range(2):
        assert _moments(ys[0][i], fg[i]) == pytest.approx(_moments(src[i].astype(np.float64), fg[i]), abs=0.05)
        assert abs(_moments(ys[1][i], fg[i])[0] - src[i][fg[i]].mean()) > 1.0
