"""The 50-image history of generated images (Shrivastava et al.), with explicit randomness and saveable state.

The discriminator sees, for each new fake, either that fake or (with probability 1/2, once the pool is full) an
older fake drawn uniformly from the pool, which the new one replaces. This damps oscillation of the GAN game.
"""

from __future__ import annotations

import torch


class ImagePool:
    """A pool of at most ``size`` images of shape (C, H, W); ``size`` 0 disables it (query returns its input).

    ``generator`` is a CPU torch.Generator; every random choice is drawn from it, so a pool with a restored
    generator state and restored contents behaves exactly as before.
    """

    def __init__(self, size: int, generator: torch.Generator) -> None:
        assert size >= 0, "pool size must be >= 0"
        self.size = size
        self.generator = generator
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) new fakes -> (B, C, H, W) fakes for the discriminator (same device and dtype)."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            # Two draws per image always, so the stream position does not depend on the outcome.
            u = torch.rand((), generator=self.generator).item()
            j = int(torch.randint(0, self.size, (), generator=self.generator).item())
            if u > 0.5:
                old = self.images[j]
                self.images[j] = image.clone()
                out.append(old.to(image.device, image.dtype))
            else:
                out.append(image)
        return torch.stack(out, 0).contiguous(memory_format=_format_of(images))

    def state(self, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
        """Tensors (pool images as one (N,C,H,W) CPU tensor, generator state) and JSON for a checkpoint."""
        tensors = {f"{prefix}/rng": self.generator.get_state()}
        if self.images:
            tensors[f"{prefix}/images"] = torch.stack([i.float().cpu() for i in self.images], 0).contiguous()
        return tensors, {f"{prefix}/len": len(self.images)}

    def load_state(self, prefix: str, tensors: dict[str, torch.Tensor], state: dict, device: torch.device) -> None:
        """Restore what :meth:`state` saved; images go to ``device``."""
        self.generator.set_state(tensors[f"{prefix}/rng"])
        n = int(state.get(f"{prefix}/len", 0))
        self.images = [t.to(device) for t in tensors[f"{prefix}/images"]] if n else []
        assert len(self.images) == n, f"pool {prefix}: expected {n} images, found {len(self.images)}"


def _format_of(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
