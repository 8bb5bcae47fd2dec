"""Field-of-view crop: keep only the ultrasound image, zero everything else, crop to the mask's bounding box.

Layers, each importing only the ones above it (no circle):

- ``config``: ``CropConfig`` (settings), ``CropResult`` and ``crop_from_mask`` (plain data);
- ``morphology``: structuring elements and the small mask operations;
- ``burned_in``: burned-in text blocks and grey bars found directly in a frame;
- ``image``: the field of view of a single image by shape and intensity (+ ``burned_in``);
- ``video``: the field of view of a video from temporal change;
- ``fov``: ``find_fov`` (picks the method), ``apply_crop``, ``save_crop_debug``.

``data/resize.py`` builds on ``config`` (it resizes a crop's result), never the other way round.
"""

from sonoshift.data.crop.config import CropConfig, CropResult, crop_from_mask
from sonoshift.data.crop.fov import apply_crop, find_fov, save_crop_debug
from sonoshift.data.crop.video import change_range

__all__ = ["CropConfig", "CropResult", "apply_crop", "change_range", "crop_from_mask", "find_fov", "save_crop_debug"]
