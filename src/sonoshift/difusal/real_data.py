"""Real-data inputs of the loop (config ``data.test_path`` / ``unlabelled_path`` / ``harmonizer``): an external
test set under the African rule, unlabelled images of another domain for the generator, and the test frames
harmonized by a translator.

The Spain -> Africa protocol: ``--data`` is FETAL_PLANES_DB (``sonoshift prepare --public fetal_planes_db``; its
labels train and validate), ``test_path`` the African planes (``--public african_planes``) restricted to the
African rule's test part (judges/plane/african.py: never trained, tuned or selected on), ``unlabelled_path`` the
same African set restricted to the adaptation part, read as images only (no label column is read), and
``harmonizer`` a translator africa -> spain trained on Spanish images and the adaptation part.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from sonoshift.data.manifests import read_manifest
from sonoshift.difusal.config import LoopData
from sonoshift.difusal.data import Frames, load_split
from sonoshift.errors import SonoshiftError
from sonoshift.io.images import read_gray

SPLITS = ("train", "val", "test")
PARTS = {"african_test": "test", "african_adaptation": "adaptation"}


def resolve(path: str, data: str | Path) -> Path:
    """``path`` as given when absolute, else relative to the ``--data`` folder."""
    p = Path(path)
    return p if p.is_absolute() else Path(data) / p


def _manifests(root: Path) -> list[Path]:
    if not (root / "dataset.json").is_file():
        raise SonoshiftError(f"{root} is not a prepared dataset (no dataset.json); run `sonoshift prepare` first.")
    found = [root / f"manifest_{s}.csv" for s in SPLITS if (root / f"manifest_{s}.csv").is_file()]
    if not found:
        raise SonoshiftError(f"{root} has no manifest_<split>.csv.")
    return found


def native_size(root: Path) -> int:
    """The side (px) of the prepared frames of ``root`` (the first frame; prepared frames share one size)."""
    for man in _manifests(root):
        for row in read_manifest(man):
            return int(read_gray(root / row["path"]).shape[0])
    raise SonoshiftError(f"{root} holds no frame.")


def part_mask(patients: np.ndarray, part: str) -> np.ndarray:
    """Which frames belong to the African rule's ``part`` (``african_test`` / ``african_adaptation``); all when
    ``part`` is empty."""
    if not part:
        return np.ones(len(patients), bool)
    from sonoshift.judges.plane.african import in_part

    return in_part([str(p) for p in patients], PARTS[part])


def external_test(d: LoopData, data: str | Path, size: int | None = None) -> Frames:
    """The test frames of ``d.test_path`` (every split, the loop's planes) restricted to ``d.test_part``, at
    ``size`` (default ``d.size``)."""
    root = resolve(d.test_path, data)
    parts = []
    for man in _manifests(root):
        split = man.stem.removeprefix("manifest_")
        try:
            parts.append(load_split(root, split, tuple(d.planes), size or d.size, fill_plane=d.fill_plane))
        except SonoshiftError:
            if not any((r.get("plane") or "").strip() in d.planes for r in read_manifest(man)):
                continue  # a split without a frame of the planes
            raise
    if not parts:
        raise SonoshiftError(f"{root} has no frame of the planes {', '.join(d.planes)}.")
    f = Frames.concat(parts)
    f = f.take(np.flatnonzero(part_mask(f.patients, d.test_part)))
    if not len(f):
        raise SonoshiftError(f"{root} has no frame of the {d.test_part or 'whole'} part to test on.")
    return f


def unlabelled_images(d: LoopData, data: str | Path) -> Frames:
    """Every image of ``d.unlabelled_path`` (every split; ``d.unlabelled_domains`` when given) in
    ``d.unlabelled_part``, as images only: plane -1, GA NaN (no label column is read)."""
    root = resolve(d.unlabelled_path, data)
    xs, pats, vids = [], [], []
    for man in _manifests(root):
        for row in read_manifest(man):
            if d.unlabelled_domains and (row.get("domain") or "") not in d.unlabelled_domains:
                continue
            img = read_gray(root / row["path"])
            if img.shape != (d.size, d.size):
                img = cv2.resize(img, (d.size, d.size), interpolation=cv2.INTER_AREA)
            xs.append(img)
            pats.append(row["patient_id"])
            vids.append(f"{row.get('domain') or ''}/{row.get('video_id') or row['path']}")
    if not xs:
        raise SonoshiftError(f"{root} holds no image of the domains {', '.join(d.unlabelled_domains)}.")
    x = torch.from_numpy(np.stack(xs)).float().div(127.5).sub(1.0).unsqueeze(1)
    f = Frames(x, np.full(len(xs), -1, np.int64), np.full(len(xs), np.nan), np.asarray(pats), np.asarray(vids))
    f = f.take(np.flatnonzero(part_mask(f.patients, d.unlabelled_part)))
    if not len(f):
        raise SonoshiftError(f"{root} holds no image of the {d.unlabelled_part} part.")
    return f


def check_african_rule(test_part: str, **sets: Frames) -> None:
    """With ``test_part`` "african_test": refuse (one sentence) any frame of ``sets`` (what the loop trains,
    tunes or selects on) that belongs to an African test-part patient."""
    if test_part != "african_test":
        return
    for name, f in sets.items():
        bad = part_mask(f.patients, "african_test")
        if bad.any():
            raise SonoshiftError(f"the {name} frames hold {int(bad.sum())} frame(s) of African test-part patients "
                                 f"(e.g. {f.patients[bad][0]}): the African rule forbids training, tuning or "
                                 "selecting on them.")


def harmonize(x: torch.Tensor, translator: str | Path, *, reverse: bool = False) -> torch.Tensor:
    """Frames (N, 1, S, S) in [-1, 1] translated by the translator run / checkpoint at ``translator`` (its
    target -> source generator with ``reverse``: CycleGAN only); pixels that were black (outside the field of view)
    stay black."""
    from sonoshift.inference.translate import run_translator
    from sonoshift.methods import load_translator

    path = Path(translator)
    if not path.exists():
        raise SonoshiftError(f"data.harmonizer {path} does not exist (a translator run folder or checkpoint).")
    model = load_translator(path, device=torch.device("cpu"), **({"reverse": True} if reverse else {}))
    with torch.no_grad():
        out = run_translator(model, x, device=torch.device("cpu")).float().clamp(-1, 1)
    return torch.where(x > -1.0 + 1e-6, out, torch.full_like(out, -1.0))


def resize_frames(f: Frames, size: int) -> Frames:
    """``f`` with its images resized to ``size`` (INTER_AREA on uint8, as the loader does)."""
    if f.x.shape[-1] == size:
        return f
    u8 = ((f.x[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    small = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in u8])
    x = torch.from_numpy(small).float().div(127.5).sub(1.0).unsqueeze(1)
    return Frames(x, f.y, f.ga, f.patients, f.videos, f.domain)


def test_sets(d: LoopData, data: str | Path) -> tuple[Frames | None, Frames | None]:
    """(external test frames at ``d.size`` or None without ``test_path``, the same frames harmonized or None
    without ``harmonizer``). Harmonization runs at the prepared frame size, then both are resized alike."""
    if not d.test_path:
        if d.harmonizer:
            raise SonoshiftError("data.harmonizer needs data.test_path (the frames it harmonizes).")
        return None, None
    root = resolve(d.test_path, data)
    if not d.harmonizer:
        return external_test(d, data), None
    full = external_test(d, data, native_size(root))
    harm = Frames(harmonize(full.x, resolve(d.harmonizer, data)), full.y, full.ga, full.patients, full.videos)
    return resize_frames(full, d.size), resize_frames(harm, d.size)


def translated_train(d: LoopData, data: str | Path) -> Frames:
    """``--data``'s training split (the frames :func:`load_split` gives at ``d.size``, same order, labels kept)
    translated into the test domain's look by ``d.harmonizer``'s reverse generator, at the prepared frame size,
    then resized like every frame: the translated arms' extra training frames (arms.py)."""
    if not d.harmonizer:
        raise SonoshiftError("the translated arms need data.harmonizer (a CycleGAN test -> training domain run, "
                             "read backwards).")
    from sonoshift.methods import has_reverse

    root, run = Path(data), resolve(d.harmonizer, data)
    if run.exists() and not has_reverse(run):
        raise SonoshiftError(f"data.harmonizer {run} has no reverse generator: the translated arms need a CycleGAN "
                             "run (test -> training domain).")
    full = load_split(root, "train", tuple(d.planes), native_size(root), tuple(d.domains), d.fill_plane)
    moved = Frames(harmonize(full.x, run, reverse=True), full.y, full.ga, full.patients, full.videos, full.domain)
    return resize_frames(moved, d.size)


__all__ = ["check_african_rule", "external_test", "harmonize", "native_size", "part_mask", "resize_frames",
           "resolve", "test_sets", "translated_train", "unlabelled_images"]
