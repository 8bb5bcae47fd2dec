"""Winograd F(4x4, 3x3) convolution in plain PyTorch ops: pure functions, no state.

A 3x3 "valid" convolution (cross-correlation, as ``F.conv2d``) computed tile by tile (Lavin & Gray, 2016):
each 6x6 input tile d (stride 4) is transformed to V = B^T d B, each 3x3 kernel g to U = G g G^T, the 36
transformed planes are multiplied as 36 matrix products over channels, M = sum_c U V, and each 4x4 output tile
is Y = A^T M A. That is 36 multiplies per 16 outputs per channel pair instead of 144: 4x fewer. The
transforms are small fixed linear maps done as one strided convolution (input), a matrix product (kernel) and
a pixel shuffle (output), so the work is dominated by the batched matrix products.

The weight gradient uses the same transforms: dU = sum over tiles (A dY A^T) V^T, then dW = G^T dU G.
Results equal ``F.conv2d`` and its gradients to float32 rounding (about 1e-5 relative).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

TILE = 4  # output tile side m of F(m x m, 3 x 3); input tiles are m + 2 = 6 wide
CHUNK_BYTES = 8 << 20  # input transform batch size, in bytes of transformed tiles

_BT = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
       [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]  # fmt: skip
_G = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
      [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]  # fmt: skip
_AT = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]


@functools.lru_cache(maxsize=8)
def transforms(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The 2-D transforms as matrices over flattened tiles (built in float64, then cast):
    input (36, 1, 6, 6) conv filters with V_k = sum_ij B[k, ij] d_ij, kernel (36, 9) with U = G2 g,
    output (16, 36) with Y = A2 M."""
    f64 = torch.float64
    bt, g, at = torch.tensor(_BT, dtype=f64), torch.tensor(_G, dtype=f64), torch.tensor(_AT, dtype=f64)
    b2 = torch.kron(bt, bt).view(36, 1, 6, 6)
    g2, a2 = torch.kron(g, g), torch.kron(at, at)
    return tuple(t.to(device=device, dtype=dtype).contiguous() for t in (b2, g2, a2))  # type: ignore[return-value]


def _pad_to_tiles(x: torch.Tensor, out_h: int, out_w: int) -> tuple[torch.Tensor, int, int]:
    """Zero-pad (N, C, out_h + 2, out_w + 2) on the bottom/right so the output sides are multiples of TILE."""
    ph, pw = (-out_h) % TILE, (-out_w) % TILE
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
    return x, (out_h + ph) // TILE, (out_w + pw) // TILE


def input_transform(x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(N, C, H + 2, W + 2) -> V (36, C, N * th * tw) and the tile grid (th, tw) = ceil((H, W) / 4).

    Done a few images at a time (about CHUNK_BYTES of transformed tiles each), which keeps the strided
    convolution's output in cache: transforming a whole batch of large maps at once is several times slower."""
    n, c = x.shape[:2]
    x, th, tw = _pad_to_tiles(x, x.shape[-2] - 2, x.shape[-1] - 2)
    b2 = transforms(x.device, x.dtype)[0]
    t = th * tw
    v = x.new_empty(36, c, n, t)
    step = max(1, CHUNK_BYTES // (c * 36 * t * x.element_size()))
    for i in range(0, n, step):
        xi = x[i : i + step]
        vi = F.conv2d(xi.reshape(-1, 1, xi.shape[-2], xi.shape[-1]), b2, stride=TILE)  # (n_i*C, 36, th, tw)
        v[:, :, i : i + len(xi)].copy_(vi.view(len(xi), c, 36, t).permute(2, 1, 0, 3))
    return v.view(36, c, n * t), th, tw


def kernel_transform(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernels (O, C, 3, 3) -> U (36, O, C)."""
    o, c = weight.shape[:2]
    g2 = transforms(weight.device, weight.dtype)[1]
    return (g2 @ weight.reshape(o * c, 9).T).view(36, o, c)


def output_from_transformed(
    v: torch.Tensor, u: torch.Tensor, n: int, th: int, tw: int, h: int, w: int
) -> torch.Tensor:
    """The convolution from transformed input V (36, C, N * th * tw) and kernels U (36, O, C): (N, O, h, w)."""
    o = u.shape[1]
    a2 = transforms(v.device, v.dtype)[2]
    m = torch.bmm(u, v)  # (36, O, T)
    y = (a2 @ m.view(36, -1)).view(TILE, TILE, o, n, th, tw)  # (p, q, O, N, i, j): output pixel (4i + p, 4j + q)
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(n, o, th * TILE, tw * TILE)
    return y[:, :, :h, :w] if (y.shape[-2] != h or y.shape[-1] != w) else y


def weight_grad_from_transformed(v: torch.Tensor, th: int, tw: int, grad_out: torch.Tensor) -> torch.Tensor:
    """Weight gradient (O, C, 3, 3) from the transformed input V (36, C, N * th * tw) of the forward pass and
    the output gradient (N, O, h, w)."""
    n, o, h, w = grad_out.shape
    c = v.shape[1]
    _, g2, a2 = transforms(v.device, v.dtype)
    ph, pw = th * TILE - h, tw * TILE - w
    if ph or pw:
        grad_out = F.pad(grad_out, (0, pw, 0, ph))
    gy = grad_out.view(n, o, th, TILE, tw, TILE).permute(3, 5, 1, 0, 2, 4).reshape(TILE * TILE, -1)
    dm = (a2.T @ gy).view(36, o, n * th * tw)
    du = torch.bmm(dm, v.transpose(1, 2))  # (36, O, C)
    return (g2.T @ du.view(36, o * c)).view(9, o, c).permute(1, 2, 0).reshape(o, c, 3, 3)


def rotated_kernels(weight: torch.Tensor) -> torch.Tensor:
    """The kernels of the input gradient: ``weight`` (O, C, 3, 3) rotated by 180 degrees, in/out swapped."""
    return weight.flip((2, 3)).transpose(0, 1)


def conv3x3_valid(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for 3x3 kernels, stride 1, no padding: (N, C, H + 2, W + 2) ->
    (N, O, H, W), any H, W >= 1."""
    v, th, tw = input_transform(x)
    y = output_from_transformed(v, kernel_transform(weight), x.shape[0], th, tw, x.shape[-2] - 2, x.shape[-1] - 2)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def conv3x3_valid_weight_grad(x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
    """Gradient of ``sum(conv3x3_valid(x, W) * grad_out)`` with respect to W: (O, C, 3, 3).
    ``x`` (N, C, H + 2, W + 2), ``grad_out`` (N, O, H, W)."""
    v, th, tw = input_transform(x)
    return weight_grad_from_transformed(v, th, tw, grad_out)


def conv3x3_valid_input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Gradient of ``sum(conv3x3_valid(x, weight) * grad_out)`` with respect to x: the full correlation of
    ``grad_out`` (N, O, H, W) with the kernels rotated by 180 degrees -> (N, C, H + 2, W + 2)."""
    h, w = grad_out.shape[-2:]
    ph, pw = (-(h + 2)) % TILE, (-(w + 2)) % TILE  # pad to whole tiles here too: one copy instead of two
    gx = conv3x3_valid(F.pad(grad_out, (2, 2 + pw, 2, 2 + ph)), rotated_kernels(weight))
    return gx[:, :, : h + 2, : w + 2] if (ph or pw) else gx
