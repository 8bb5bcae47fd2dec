"""Data pipeline: readers (video, DICOM, images, folders, NumPy), field-of-view crop, datasets and manifests."""
