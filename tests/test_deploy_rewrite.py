"""The exact export rewrites (deploy/rewrite.py): same function as the trained network, cheaper ONNX ops."""

import numpy as np
import pytest
import torch
from torch import nn

from sonoshift.deploy.export import graph_bytes
from sonoshift.deploy.graphs import NoiseSpec
from sonoshift.deploy.rewrite import scalar_prelu_as_leaky


def _unet():
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1)
    with torch.no_grad():  # slopes far from the init's 0.25, each its own, so a wrong slope shows
        for i, m in enumerate(m for m in net.modules() if isinstance(m, nn.PReLU)):
            m.weight.fill_(-0.4 + 0.13 * i)
    return net.eval()


def test_rewritten_net_is_the_same_function_and_the_original_is_untouched():
    net = _unet()
    x = torch.randn(3, 1, 32, 40, generator=torch.Generator().manual_seed(1))
    new = scalar_prelu_as_leaky(net)
    assert not any(isinstance(m, nn.PReLU) for m in new.modules())
    assert sum(isinstance(m, nn.PReLU) for m in net.modules()) == sum(isinstance(m, nn.LeakyReLU) for m in new.modules())
    with torch.no_grad():
        torch.testing.assert_close(new(x), net(x), rtol=0, atol=1e-6)
    # a per-channel PReLU has no LeakyReLU twin and is kept
    multi = nn.Sequential(nn.Conv2d(1, 3, 3), nn.PReLU(3))
    assert scalar_prelu_as_leaky(multi) is multi and isinstance(multi[1], nn.PReLU)  # nothing to rewrite: no copy


def test_exported_graph_uses_leaky_relu_and_matches_torch():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    net = _unet()
    data = graph_bytes(net, NoiseSpec(), (32, 32))
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert "PRelu" not in ops and "LeakyRelu" in ops
    x = np.random.default_rng(2).normal(size=(2, 1, 48, 32)).astype(np.float32)  # dynamic height and width
    y = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(y, ref, atol=1e-4)
    assert any(isinstance(m, nn.PReLU) for m in net.modules())  # the caller's network keeps its PReLUs
