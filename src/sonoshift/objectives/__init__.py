"""Objectives: losses and the image history pool, apart from models and loop."""

from sonoshift.objectives.cyclegan import (
    CycleGANLossWeights,
    discriminator_loss,
    generator_loss,
    lsgan,
)
from sonoshift.objectives.image_pool import ImagePool

__all__ = ["CycleGANLossWeights", "ImagePool", "discriminator_loss", "generator_loss", "lsgan"]
