"""A 3x3 stride-1 convolution that trains with Winograd F(4x4, 3x3) arithmetic on the CPU.

The residual blocks of the CycleGAN generator spend most of a CPU training step in 3x3 convolutions on wide
feature maps (256 channels at a quarter of the image side). PyTorch's CPU path (oneDNN direct convolution) does
all 9 multiply-adds per tap in the forward pass and in both gradients; the Winograd form (models/winograd.py)
does a quarter of them. On 2 AVX2 cores this makes the forward pass about 1.4x and the weight gradient about
1.6x faster for those shapes (``python bench/train_cyclegan.py`` measures the whole step).

The forward pass, the input gradient (itself a 3x3 convolution of the zero-padded output gradient with the
rotated kernels) and the weight gradient all go through the Winograd functions; the bias gradient is a sum.
Results equal ``F.conv2d`` to float32 rounding (about 1e-5 relative) and are deterministic, so seeded runs and
exact resume are unaffected. Everywhere the fast path does not apply (CUDA/MPS, where cuDNN is better; autocast;
half precision; thin layers or small maps, where the transforms cost more than they save) the layer is a plain
``nn.Conv2d`` with the same parameters and state-dict keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.models.winograd import (
    conv3x3_valid_input_grad,
    input_transform,
    kernel_transform,
    output_from_transformed,
    weight_grad_from_transformed,
)

# The fast path is taken from this many channels (in and out) and output pixels per image upward; below (128
# channels, or 8x8 maps) the transforms cost about what the saved multiplies do (measured on 2 AVX2 cores).
MIN_CHANNELS = 256
MIN_PIXELS = 16 * 16


class _WinogradConv3x3(torch.autograd.Function):
    """y = conv2d(x, weight, bias) for 3x3 kernels, stride 1, no padding; all gradients by Winograd. The
    transformed input V is kept for the weight gradient instead of x (2.25x its size, one transform saved)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # noqa: ANN001, ANN205 - autograd signature
        n, _, hi, wi = x.shape
        v, th, tw = input_transform(x)
        y = output_from_transformed(v, kernel_transform(weight), n, th, tw, hi - 2, wi - 2)
        ctx.save_for_backward(v, weight)
        ctx.tiles, ctx.has_bias = (th, tw), bias is not None
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205 - autograd signature
        v, weight = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = conv3x3_valid_input_grad(grad_out, weight) if need_x else None
        grad_w = weight_grad_from_transformed(v, *ctx.tiles, grad_out) if need_w else None
        grad_b = grad_out.sum((0, 2, 3)) if need_b and ctx.has_bias else None
        return grad_x, grad_w, grad_b


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d(in_ch, out_ch, 3, padding=padding)`` (stride 1, zero padding, no groups or dilation) with the
    Winograd fast path above on the CPU. ``fast=False`` always takes the plain path."""

    def __init__(self, in_ch: int, out_ch: int, padding: int = 0, bias: bool = True, fast: bool = True) -> None:
        super().__init__(in_ch, out_ch, 3, padding=padding, bias=bias)
        self.fast = fast

    def uses_fast_path(self, x: torch.Tensor) -> bool:
        """Whether a forward pass on ``x`` takes the Winograd path."""
        if not self.fast or x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4:
            return False
        if self.weight.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return False
        if min(self.in_channels, self.out_channels) < MIN_CHANNELS:
            return False
        p = self.padding[0]
        return (x.shape[-2] + 2 * p - 2) * (x.shape[-1] + 2 * p - 2) >= MIN_PIXELS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_fast_path(x):
            return F.conv2d(x, self.weight, self.bias, padding=self.padding)
        p = self.padding[0]
        if p:
            x = F.pad(x, (p, p, p, p))
        return _WinogradConv3x3.apply(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", fast={self.fast}"
