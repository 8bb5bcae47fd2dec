"""File suffixes of every input kind sonoshift reads, in one place (lower case, with the dot).

``data/readers.py`` dispatches on these and ``data/spec.py`` collects dataset items with them, so a file that the
spec accepts is always one the readers can open.
"""

from __future__ import annotations

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".avi", ".mov", ".mkv"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
NUMPY_SUFFIXES = frozenset({".npy"})
SUPPORTED_SUFFIXES = VIDEO_SUFFIXES | DICOM_SUFFIXES | IMAGE_SUFFIXES | NUMPY_SUFFIXES

__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "NUMPY_SUFFIXES", "SUPPORTED_SUFFIXES", "VIDEO_SUFFIXES"]
