"""Networks: one architecture per file, single-channel images in [-1, 1]."""

from sonoshift.models.init import init_normal
from sonoshift.models.norm import InstanceNorm
from sonoshift.models.patchgan import PatchGAN
from sonoshift.models.resnet_generator import ResnetGenerator

__all__ = ["InstanceNorm", "PatchGAN", "ResnetGenerator", "init_normal"]
