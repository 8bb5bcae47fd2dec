"""Synthetic ultrasound-like inputs for the data-pipeline tests: a fan sector with speckle that changes every
frame, and a static burned-in overlay (a text box with a fake ID) in the top-left margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np

H, W = 96, 128
OVERLAY = (2, 14, 2, 40)  # y0, y1, x0, x1 of the burned-in text box (in the margin, outside the sector)


def sector_mask(h: int = H, w: int = W) -> np.ndarray:
    """A fan: apex above the top centre, 60 degree opening, radii 0.25h..1.05h (bool (h, w))."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = -0.1 * h, w / 2
    r = np.hypot(yy - cy, xx - cx)
    ang = np.degrees(np.arctan2(xx - cx, yy - cy))
    return (r > 0.3 * h) & (r < 1.0 * h) & (np.abs(ang) < 30)


def overlay_pattern() -> np.ndarray:
    """The static text box: a bright frame with a checker 'text' inside (uint8)."""
    y0, y1, x0, x1 = OVERLAY
    box = np.full((y1 - y0, x1 - x0), 40, np.uint8)
    box[2:-2, 2:-2][::2, ::3] = 255
    box[0, :] = box[-1, :] = box[:, 0] = box[:, -1] = 220
    return box


def make_video(t: int, seed: int, h: int = H, w: int = W) -> np.ndarray:
    """uint8 (t, h, w): speckle inside the sector (new every frame), static overlay box, black elsewhere."""
    rng = np.random.default_rng(seed)
    m = sector_mask(h, w)
    out = np.zeros((t, h, w), np.uint8)
    base = rng.uniform(60, 160, size=(h, w))
    for i in range(t):
        speckle = base * rng.rayleigh(0.8, size=(h, w))
        out[i][m] = np.clip(speckle[m], 20, 250).astype(np.uint8)
    y0, y1, x0, x1 = OVERLAY
    out[:, y0:y1, x0:x1] = overlay_pattern()
    return out


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    """Write gray frames as an H.264 (yuv420p) MP4 with PyAV."""
    import av

    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "12", "preset": "ultrafast"}
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="gray")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def write_dicom(path: Path, frames: np.ndarray, patient_id: str | None, *, pixel_data: bool = True,
                **extra) -> None:
    """Write a multi-frame 8-bit MONOCHROME2 ultrasound DICOM (explicit VR little endian) with pydicom; ``extra``
    attributes are set as given (keywords, e.g. PixelSpacing)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.NumberOfFrames = frames.shape[0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    for key, value in extra.items():
        setattr(ds, key, value)
    if pixel_data:
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
