"""The latent variant: autoencoder pieces, two-phase training through the engine, sampling through the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from synth_data import assert_same_weights, make_prepared
from sonoshift.config import load_config
from sonoshift.errors import SonoshiftError
from sonoshift.synth import load_synthesizer
from sonoshift.synth.config import SynthConfig, SynthLatent
from sonoshift.synth.latent import LatentAutoencoder, normalise_latent, reconstruction_loss
from sonoshift.synth.train import train_synth

TINY = ["data.size=16", "model.block_out_channels=[8,16]", "model.attention=[false,true]",
        "model.attention_head_dim=8", "model.norm_num_groups=4", "train.batch_size=4", "train.device=cpu",
        "train.precision=fp32", "train.ema_decay=0.9", "train.checkpoint_every=2", "train.keep_last=10",
        "train.log_every=1", "train.image_every=0", "train.tensorboard=false", "train.lr=1e-3", "diffusion.steps=3",
        "latent.enabled=true", "latent.channels=2", "latent.block_out_channels=[8,8]", "latent.norm_num_groups=4",
        "latent.autoencoder_steps=4", "train.max_steps=8"]
AE = SynthLatent(enabled=True, channels=2, block_out_channels=(8, 8), norm_num_groups=4)


def test_latents_are_unit_scale_and_sized_by_the_factor() -> None:
    z = normalise_latent(3.0 + 5.0 * torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(z.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.pow(2).mean(dim=(1, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)
    torch.manual_seed(0)
    ae = LatentAutoencoder(SynthLatent(channels=3, block_out_channels=(8, 8, 8), norm_num_groups=4))
    assert ae.factor == 4 and ae.latent_shape(32) == (3, 8, 8)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (2, 3, 8, 8) and ae.decode(z).shape == x.shape
    with pytest.raises(ValueError, match="divisible"):
        ae.latent_shape(30)


def test_autoencoder_learns_to_reconstruct() -> None:
    torch.manual_seed(0)
    ae = LatentAutoencoder(AE)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    x = torch.stack([((xx - c) ** 2 + yy**2 < 0.3).float() * 1.6 - 0.8 for c in (-0.4, 0.0, 0.4, 0.2)])[:, None]
    opt = torch.optim.Adam(ae.parameters(), 3e-3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        first = float(reconstruction_loss(ae, x, 0.0, g))
    for _ in range(60):
        loss = reconstruction_loss(ae, x, 0.05, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(reconstruction_loss(ae, x, 0.0, g)) < 0.4 * first


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("latent") / "sim", name="sim", patients=6)


def test_two_phases_train_then_sample(data: Path, tmp_path: Path) -> None:
    cfg = load_config(SynthConfig, None, TINY)
    train_synth(data, cfg, tmp_path / "run", progress=False)
    ck = {s: load_file(str(tmp_path / f"run/checkpoints/step_{s:08d}/model.safetensors")) for s in (2, 4, 6, 8)}

    def part(s: int, prefix: str) -> dict[str, torch.Tensor]:
        return {k: v for k, v in ck[s].items() if k.startswith(prefix)}

    def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # Steps 1-4 train only the autoencoder, steps 5-8 only the denoiser (the autoencoder is then frozen).
    assert part(2, "model/autoencoder/") and not same(part(2, "model/autoencoder/"), part(4, "model/autoencoder/"))
    assert same(part(2, "model/unet/"), part(4, "model/unet/"))
    assert same(part(4, "model/autoencoder/"), part(8, "model/autoencoder/"))
    assert not same(part(4, "model/unet/"), part(6, "model/unet/"))
    logs = [json.loads(line) for line in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert all("ae_l1" in r for r in logs[:4]) and all("loss" in r and "ae_l1" not in r for r in logs[4:])
    # The pipeline samples latents (8 x 8 x 2) and decodes them to 16 px images; same seed, same images.
    pipe = load_synthesizer(tmp_path / "run")
    assert pipe.autoencoder is not None and pipe.metadata["latent"] and pipe.metadata["sample_size"] == 8
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    a = pipe(plane="brain", ga=24.0, n=2, generator=g(1))
    b = pipe(plane="brain", ga=24.0, n=2, generator=g(1))
    assert a.shape == (2, 1, 16, 16) and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    # The pipeline's autoencoder holds the weights trained in phase 1.
    sd = pipe.autoencoder.state_dict()
    assert all(torch.equal(sd[k[len("model/autoencoder/"):]], v) for k, v in part(8, "model/autoencoder/").items())


def test_exact_resume_across_the_phase_switch(data: Path, tmp_path: Path) -> None:
    train_synth(data, load_config(SynthConfig, None, TINY), tmp_path / "straight", progress=False)
    train_synth(data, load_config(SynthConfig, None, [*TINY, "train.max_steps=6"]), tmp_path / "resumed",
                progress=False)
    # max_steps 6 with 4 autoencoder steps stopped inside phase 2; resuming to 8 must match the straight run.
    train_synth(data, load_config(SynthConfig, None, TINY), tmp_path / "resumed", resume=True, progress=False)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed", 8)
    with pytest.raises(SonoshiftError, match="max_steps"):
        train_synth(data, load_config(SynthConfig, None, [*TINY, "train.max_steps=4"]), tmp_path / "bad",
                    progress=False)


def test_named_latent_configs_fit_their_sizes() -> None:
    from sonoshift.synth.model import SynthUNet

    root = Path(__file__).resolve().parents[1]
    for path, size, grid in (("configs/cpu/synth_latent.yaml", 64, 32), ("configs/gpu/synth_latent_256.yaml", 256, 32)):
        cfg = load_config(SynthConfig, root / path, [])
        lat, m = cfg.latent, cfg.model
        assert lat.enabled and cfg.data.size == size
        assert size // 2 ** (len(lat.block_out_channels) - 1) == grid
        assert grid % (m.patch * 2 ** (len(m.block_out_channels) - 1)) == 0
        assert all(c % lat.norm_num_groups == 0 for c in lat.block_out_channels)
        assert cfg.train.max_steps > lat.autoencoder_steps
    cfg = load_config(SynthConfig, root / "configs/cpu/synth_latent.yaml", [])
    ae = LatentAutoencoder(cfg.latent)
    net = SynthUNet(cfg.model, channels=cfg.latent.channels, sample_size=32, n_planes=4, n_scanners=2)
    with torch.no_grad():
        z = ae.encode(torch.zeros(1, 1, 64, 64))
        y = net(z, torch.tensor([10]), torch.tensor([1]), torch.tensor([25.0]), torch.tensor([1]))
    assert z.shape == y.shape == (1, 4, 32, 32) and ae.decode(y).shape == (1, 1, 64, 64)
