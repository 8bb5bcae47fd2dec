"""Reading and writing pixels on disk, one reader and one writer per format.

- ``io.images``: gray images (``read_gray``, ``read_image_pages``, ``write_png``; 8-bit only, colour -> BT.601 luma);
- ``io.labels``: label maps of class ids (``read_labels``, ``write_labels``);
- ``io.video``: videos (``read_video``, ``iter_video_frames``, ``video_info``; ``write_mp4``, one H.264 setting);
- ``io.suffixes``: the suffix lists every reader and ``data/spec.py`` share.

Whole-input stacks (DICOM, folders, ``.npy``, dispatch by suffix) are ``data/readers.read_stack``.
"""
