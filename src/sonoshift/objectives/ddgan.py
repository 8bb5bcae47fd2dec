"""Losses of the denoising diffusion GAN and the two halves of one training step (discriminator, generator).

The losses are the non-saturating logistic GAN losses on logits, and the R1 gradient penalty on real pairs,
applied lazily (every k steps) with weight gamma / 2 — not multiplied by k, as in the DDGAN reference setup.

One step, given clean targets x0 and the conditioning images (both (B, 1, H, W) in [-1, 1]):

* discriminator: draw t ~ U{0..N-1} and a real forward pair (x_t, x_{t+1}); the generator (under no_grad, so its
  output is detached) predicts x_0 from (x_{t+1}, condition, t, z) and the Gaussian posterior turns it into a fake
  x_t; loss = softplus(-D(real)) + softplus(D(fake)) [+ R1 on the real x_t];
* generator: a fresh t, pair and z; loss = softplus(-D(fake)), with gradients flowing through D into G.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sonoshift.diffusion.schedule import Schedule, q_sample_pairs, sample_posterior


def d_logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss mean(softplus(-real)) + mean(softplus(fake)) = -log sigmoid(real) - log(1 - sigmoid(fake))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def g_nonsaturating_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss mean(softplus(-fake)) = -log sigmoid(D(fake))."""
    return F.softplus(-fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, real_inputs: torch.Tensor, gamma: float) -> torch.Tensor:
    """gamma / 2 * E ||d D(x) / d x||^2 over the batch; ``real_inputs`` must require grad and feed the logits.

    The graph is kept (create_graph) so the penalty can be back-propagated into the discriminator.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_inputs, create_graph=True)
    return 0.5 * gamma * grad.pow(2).reshape(grad.shape[0], -1).sum(dim=1).mean()


def draw_steps(s: Schedule, batch: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Step indices t ~ U{0, ..., N-1}, shape (batch,), long, on ``device``."""
    return torch.randint(0, s.num_steps, (batch,), generator=generator, device=device)


def draw_latents(nz: int, batch: int, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Latents z ~ N(0, I), shape (batch, nz), on ``like``'s device and dtype."""
    return torch.randn((batch, nz), generator=generator, device=like.device, dtype=like.dtype)


def generate_pair(
    G: nn.Module,
    s: Schedule,
    x0: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator | None,
) -> dict[str, torch.Tensor]:
    """A real pair and the generator's fake x_t for it: keys t, x_t, x_next, x0_pred, x_t_fake (all (B, 1, H, W))."""
    t = draw_steps(s, x0.shape[0], x0.device, generator)
    x_t, x_next = q_sample_pairs(s, x0, t, generator)
    z = draw_latents(G.cfg.nz, x0.shape[0], x0, generator)
    x0_pred = G(torch.cat([x_next, cond], dim=1), t, z)
    x_t_fake = sample_posterior(s, x0_pred, x_next, t, generator)
    return {"t": t, "x_t": x_t, "x_next": x_next, "x0_pred": x0_pred, "x_t_fake": x_t_fake}


def discriminator_loss(
    G: nn.Module,
    D: nn.Module,
    s: Schedule,
    x0: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator | None,
    r1_gamma: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The discriminator's loss on one batch; R1 on the real x_t is added when ``r1_gamma`` > 0.

    The generator runs under ``torch.no_grad()``: no gradient reaches it from this loss.
    Returns (loss, {"loss_D_real", "loss_D_fake", "r1"}).
    """
    with torch.no_grad():
        p = generate_pair(G, s, x0, cond, generator)
    d_cond = cond if D.cfg.see_condition else None
    x_t = p["x_t"].detach().requires_grad_(r1_gamma > 0)
    real = D(x_t, p["x_next"], p["t"], d_cond)
    fake = D(p["x_t_fake"], p["x_next"], p["t"], d_cond)
    loss_real, loss_fake = F.softplus(-real).mean(), F.softplus(fake).mean()
    loss = loss_real + loss_fake
    r1 = r1_penalty(real, x_t, r1_gamma) if r1_gamma > 0 else torch.zeros((), device=x0.device)
    logs = {"loss_D_real": loss_real.item(), "loss_D_fake": loss_fake.item(), "r1": r1.item()}
    return loss + r1, logs


def generator_loss(
    G: nn.Module,
    D: nn.Module,
    s: Schedule,
    x0: torch.Tensor,
    cond: torch.Tensor,
    generator: torch.Generator | None,
    l1_weight: float = 0.0,
    structure_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's loss on one batch: non-saturating GAN loss + ``l1_weight`` x mean |x0_pred - x0| (SynDiff's
    L1 anchor, weight 0.5 there) + ``structure_weight`` x :func:`structure_loss` between x0_pred and the first
    condition channel (the residual's base). Returns (loss, the ``generate_pair`` tensors plus "l1", the
    unweighted L1, and "structure" when its weight is set)."""
    p = generate_pair(G, s, x0, cond, generator)
    fake = D(p["x_t_fake"], p["x_next"], p["t"], cond if D.cfg.see_condition else None)
    p["l1"] = (p["x0_pred"] - x0).abs().mean()
    loss = g_nonsaturating_loss(fake)
    if l1_weight:
        loss = loss + l1_weight * p["l1"]
    if structure_weight:
        p["structure"] = structure_loss(p["x0_pred"], cond[:, :1])
        loss = loss + structure_weight * p["structure"]
    return loss, p


def structure_loss(pred: torch.Tensor, anchor: torch.Tensor, window: int = 9, eps: float = 1e-4) -> torch.Tensor:
    """Content anchor 1 - mean LNCC(pred, anchor) over ``window`` x ``window`` box windows (valid positions,
    population statistics, (cov + eps) / sqrt((var_a + eps)(var_b + eps))), differentiable; images (B, 1, H, W)
    in [-1, 1]. 0 when pred is a local affine grey map of the anchor (LNCC ignores local brightness and contrast),
    up to 2 for anti-correlated structure. Scalar."""
    x = torch.cat([pred.float(), anchor.float()], dim=1)
    mom = F.avg_pool2d(torch.cat([x, x * x, (pred * anchor).float()], dim=1), window, stride=1)
    mu_a, mu_b, aa, bb, ab = mom.unbind(1)
    va, vb, cov = (aa - mu_a * mu_a).clamp_min(0), (bb - mu_b * mu_b).clamp_min(0), ab - mu_a * mu_b
    return 1.0 - ((cov + eps) / ((va + eps) * (vb + eps)).sqrt()).mean()


# -- content loss of the cascade's joint fine-tuning ----------------------------------------------------------


class ContentLoss(nn.Module):
    """MSE + LPIPS (when LPIPS weights load) or MSE + (1 - SSIM) between images in [-1, 1] -> scalar.

    ``kind``: "auto" tries LPIPS and falls back to SSIM; "mse_lpips" requires LPIPS; "mse_ssim" never tries it.
    ``lpips_weights``: folder with the LPIPS backbone and head files (see ``sonoshift.metrics.lpips``).
    ``self.name`` says which one is in use ("mse+lpips" or "mse+ssim"), for the run metadata. SSIM is the
    project's SSIM (11x11 Gaussian window on [0, 1] images, see ``differentiable_ssim``): images need >= 11 px.
    """

    def __init__(self, kind: str = "auto", lpips_net: str = "alex", lpips_weights: str = "") -> None:
        super().__init__()
        from sonoshift.errors import SonoshiftError

        if kind not in ("auto", "mse_lpips", "mse_ssim"):
            raise SonoshiftError(f"content loss must be auto, mse_lpips or mse_ssim, got {kind!r}.")
        self.lpips: nn.Module | None = None
        self.reason = "mse_ssim requested"
        if kind != "mse_ssim":
            try:
                self.lpips = _load_lpips(lpips_net, lpips_weights)
            except (ImportError, SonoshiftError) as e:
                if kind == "mse_lpips":
                    msg = f"content loss mse_lpips needs LPIPS weights, which did not load: {e}"
                    raise SonoshiftError(msg) from None
                self.reason = f"LPIPS unavailable ({e})"
        if self.lpips is not None:
            self.lpips.eval().requires_grad_(False)
            self.reason = "LPIPS weights loaded"
        self.name = "mse+lpips" if self.lpips is not None else "mse+ssim"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = F.mse_loss(pred, target)
        if self.lpips is not None:
            return mse + self.lpips((pred + 1) / 2, (target + 1) / 2).mean()
        return mse + (1.0 - differentiable_ssim((pred.float() + 1) / 2, (target.float() + 1) / 2)).mean()


def differentiable_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per pair of (B, 1, H, W) images in [0, 1] -> (B,), with gradients.

    The project's SSIM window (11x11 Gaussian, sigma 1.5) and formulas (``sonoshift.metrics.ssim``), with the
    variances formed out of place: ``metrics.ssim`` updates them in place for speed, which autograd refuses.
    Equals scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    data_range=1)``.
    """
    from sonoshift.metrics.ssim import maps_from_moments
    from sonoshift.metrics.windows import (
        gaussian_kernel1d,
        moment_stack,
        separable_filter,
    )

    a, b = a[:, 0], b[:, 0]
    taps = gaussian_kernel1d(1.5, 3.5, dtype=a.dtype, device=a.device)
    mu_a, mu_b, aa, bb, ab = separable_filter(moment_stack(a, b), taps).unbind(1)
    maps = maps_from_moments(mu_a, mu_b, aa - mu_a * mu_a, bb - mu_b * mu_b, ab - mu_a * mu_b, None)
    return maps.ssim.mean(dim=(-2, -1))


def _load_lpips(net: str, weights: str) -> nn.Module:
    """The metrics package's LPIPS module ((a, b) in [0, 1] -> (B,)); ``weights`` is the folder holding the
    backbone and head files ("" = the torch hub cache only). Raises SonoshiftError when they are missing."""
    from sonoshift.metrics import load_lpips

    return load_lpips(net, weights or None)
