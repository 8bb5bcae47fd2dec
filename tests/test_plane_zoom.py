"""The test-time zoom ensemble (judges/plane/zoom.py): the zoom against scipy's bilinear interpolation at the mapped
coordinates, the ensemble against its members, AdaBN per zoom against a direct computation, the checkpoint, the CLI
and its refusals, and the Spain -> Africa variants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import ndimage
from typer.testing import CliRunner

from plane_data import make_prepared, prepared, trained  # noqa: F401 (fixtures)
from sonoshift.cli.main import app
from sonoshift.errors import SonoshiftError
from sonoshift.judges.plane.adapt import zoom_classifier
from sonoshift.judges.plane.checkpoint import load_classifier, save_classifier
from sonoshift.judges.plane.data import load_samples, to_input
from sonoshift.judges.plane.net import NetConfig, PlaneNet
from sonoshift.judges.plane.zoom import ZoomEnsemble, zoom_ensemble, zoom_tensor


@pytest.mark.parametrize("z", [2.0, 1.25, 0.8])
def test_zoom_is_bilinear_sampling_about_the_centre(z):
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (24, 24))
    out = zoom_tensor(torch.from_numpy(img).float()[None, None], z)[0, 0].double().numpy()
    # output pixel i looks at input coordinate c + (i - c) / z, c = the centre (pixel centres at integers)
    c = (24 - 1) / 2
    i = np.arange(24)
    yy, xx = np.meshgrid(c + (i - c) / z, c + (i - c) / z, indexing="ij")
    ref = ndimage.map_coordinates(img + 1, [yy, xx], order=1, mode="constant", cval=0.0) - 1
    inside = (yy >= 0) & (yy <= 23) & (xx >= 0) & (xx <= 23)  # scipy and torch differ only in the last half pixel
    np.testing.assert_allclose(out[inside], ref[inside], atol=1e-5)
    if z < 1:  # a shrunk frame sits in an empty (black) field of view
        assert (out[0] == -1).all() and (out[:, -1] == -1).all()


def _zoom_uint8(frames: np.ndarray, zoom: float) -> np.ndarray:
    y = zoom_tensor(to_input(frames), zoom)
    return ((y + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).squeeze(1).numpy()


def test_zoom_one_is_identity_and_uint8_round_trip():
    f = np.random.default_rng(1).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    np.testing.assert_array_equal(_zoom_uint8(f, 1.0), f)
    z2 = _zoom_uint8(np.full((1, 16, 16), 200, np.uint8), 2.0)
    assert (z2 == 200).all()  # a uniform frame enlarged stays uniform


def _net(seed: int = 0) -> PlaneNet:
    torch.manual_seed(seed)
    return PlaneNet(3, NetConfig(stem=8, widths=(16, 32), dropout=0.0)).eval()


def test_ensemble_averages_the_members_softmax_over_zoomed_inputs():
    net = _net()
    x = torch.rand(5, 1, 32, 32) * 2 - 1
    ens = zoom_ensemble(net, (1.0, 1.5))
    with torch.no_grad():
        p = torch.softmax(ens(x), 1)
        by_hand = (torch.softmax(net(x), 1) + torch.softmax(net(zoom_tensor(x, 1.5)), 1)) / 2
        torch.testing.assert_close(p, by_hand, atol=1e-6, rtol=0)
        torch.testing.assert_close(torch.softmax(zoom_ensemble(net, (1.0,))(x), 1), torch.softmax(net(x), 1))
        assert ens.features(x).shape == (5, net.feature_dim) and ens.head.out_features == 3


def test_each_zoom_is_renormalized_on_the_frames_zoomed_alike():
    net = _net()
    frames = np.random.default_rng(2).integers(0, 256, (12, 32, 32), dtype=np.uint8)
    ens = zoom_ensemble(net, (1.0, 2.0), frames)
    for member, z in zip(ens.members, (1.0, 2.0)):
        with torch.no_grad():  # the first norm's statistics = those of the first conv's output on zoomed frames
            h = net.body[0](zoom_tensor(to_input(frames), z)).double()
        mean = h.mean((0, 2, 3))
        var = h.transpose(0, 1).reshape(h.shape[1], -1).var(1, unbiased=True)
        torch.testing.assert_close(member.body[1].running_mean.double(), mean, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(member.body[1].running_var.double(), var, atol=1e-5, rtol=1e-4)
    assert not torch.equal(ens.members[0].body[1].running_mean, ens.members[1].body[1].running_mean)


def test_refusals():
    net = _net()
    for bad in ((), (1.0, 0.0), (1.0, float("nan"))):
        with pytest.raises(SonoshiftError, match="zooms must be"):
            zoom_ensemble(net, bad)
    with pytest.raises(SonoshiftError, match="at least 8"):
        zoom_ensemble(net, (1.0,), np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(SonoshiftError, match="already a zoom ensemble"):
        zoom_ensemble(zoom_ensemble(net, (1.0,)), (1.0,))
    with pytest.raises(SonoshiftError, match="one network per zoom"):
        ZoomEnsemble([net], (1.0, 1.5))


def test_checkpoint_cli_and_predict(trained, prepared, tmp_path):
    clf, folder_clf = trained
    other = load_samples(prepared, ["train"], 32, domains=["B"])
    ens = zoom_classifier(clf, (1.0, 1.25), other.frames, "domain B")
    save_classifier(ens, tmp_path / "ens")
    back = load_classifier(tmp_path / "ens")
    assert isinstance(back.model, ZoomEnsemble) and back.model.zooms == (1.0, 1.25)
    assert back.info["adapted"]["zooms"] == [1.0, 1.25]
    x = to_input(other.frames)
    with torch.no_grad():
        torch.testing.assert_close(back.model(x), ens.model(x))
    runner = CliRunner()
    folder = prepared / "frames" / "B"
    r = runner.invoke(app, ["classify", "adapt", str(folder_clf), str(folder), "-o", str(tmp_path / "cli"),
                            "--no-crop", "--zooms", "1,1.25"])
    assert r.exit_code == 0, r.output
    assert "at zooms 1, 1.25" in r.output
    assert load_classifier(tmp_path / "cli").info["adapted"]["frames"] == len(list(folder.rglob("*.png")))
    files = sorted(folder.rglob("*.png"))
    r = runner.invoke(app, ["classify", "predict", str(tmp_path / "cli"), *map(str, files), "-o",
                            str(tmp_path / "p.csv"), "--no-crop"])
    assert r.exit_code == 0, r.output
    pred = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(pred[[c for c in pred.columns if c.startswith("p_")]].sum(1), 1.0, atol=1e-5)
    assert len(pred) == len(files)
    for bad, msg in (("1,abc", "comma-separated numbers"), ("0", "zooms must be")):
        r = runner.invoke(app, ["classify", "adapt", str(folder_clf), str(folder), "-o", str(tmp_path / "bad"),
                                "--no-crop", "--zooms", bad])
        assert r.exit_code != 0 and msg in str(r.exception) and not (tmp_path / "bad").exists()


def test_spain_africa_scores_the_zoomed_variants(trained, prepared, tmp_path):
    from sonoshift.judges.plane.cross_domain import CrossDomainConfig, spain_to_africa

    target = make_prepared(tmp_path / "target", seed=1)
    rule = {"A": {"adaptation": ["A00", "A01"], "test": ["A02", "A03"]},
            "B": {"adaptation": ["B00"], "test": ["B09"]}, "seed": 0}
    table = spain_to_africa(prepared, target, tmp_path / "x", classifier=trained[1], african=rule)
    assert list(table["variant"].unique()) == ["raw", "adapted", "zoomed", "adapted_zoomed"]
    off = spain_to_africa(prepared, target, tmp_path / "y", CrossDomainConfig(zooms=()), classifier=trained[1],
                          african=rule)
    assert list(off["variant"].unique()) == ["raw", "adapted"]
    assert (tmp_path / "x" / "adapted_zoomed" / "predictions.csv").is_file()


def test_predict_with_adapt_and_zooms_equals_adapting_then_predicting(trained, prepared, tmp_path):
    from sonoshift.judges.plane.adapt import adapt_files
    from sonoshift.judges.plane.api import predict_files

    folder = prepared / "frames" / "B"
    files = sorted(folder.rglob("*.png"))
    adapt_files(trained[1], [folder], tmp_path / "ad", crop=False, zooms=(1.0, 1.5))
    by_hand = predict_files(tmp_path / "ad", files, tmp_path / "a.csv", crop=False)
    r = CliRunner().invoke(app, ["classify", "predict", str(trained[1]), *map(str, files), "-o",
                                 str(tmp_path / "b.csv"), "--no-crop", "--adapt", "--zooms", "1,1.5"])
    assert r.exit_code == 0, r.output
    at_once = pd.read_csv(tmp_path / "b.csv")
    cols = [c for c in by_hand.columns if c.startswith("p_")]
    np.testing.assert_allclose(at_once[cols].to_numpy(), by_hand[cols].to_numpy(), atol=1e-6)
    with pytest.raises(SonoshiftError, match="zooms need adapt"):
        predict_files(trained[1], files, tmp_path / "c.csv", crop=False, zooms=(1.0, 1.5))
    assert not (tmp_path / "c.csv").exists()


def test_zoom_ensemble_as_an_embedding(trained):
    from sonoshift.judges.plane.embedding import PlaneFeatures, PlanePerceptualDistance

    clf = trained[0]
    ens = zoom_classifier(clf, (1.0, 1.5))
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():  # FID/KID features: the mean of the members' features at their zooms
        by_hand = (clf.model.features(x * 2 - 1) + clf.model.features(zoom_tensor(x * 2 - 1, 1.5))) / 2
        torch.testing.assert_close(PlaneFeatures(ens)(x), by_hand, atol=1e-5, rtol=1e-5)
    with pytest.raises(SonoshiftError, match="not its zoom ensemble"):
        PlanePerceptualDistance(ens)
