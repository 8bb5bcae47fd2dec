"""Dataset spec: what `prepare` ingests (docs/formats.md section 1).

A spec is a list of items (one video, DICOM, image, NumPy stack or folder of frames each) with its domain,
patient, video id, labels and aligned stacks. It comes from a spec YAML, from one folder per domain, or from a
folder holding ``sonoshift_spec.yaml`` (the simulator's output).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from sonoshift.errors import SonoshiftError
from sonoshift.io.suffixes import IMAGE_SUFFIXES, SUPPORTED_SUFFIXES

SPEC_FILENAME = "sonoshift_spec.yaml"
# Used on file names when an item has no patient id and the input gives no pattern; `Patient01234_...` -> 01234.
DEFAULT_PATIENT_PATTERN = r"(?i)patient[_-]?(\d+)"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]*$")
_ITEM_KEYS = {"path", "domain", "patient_id", "video_id", "labels", "frame_labels", "aligned"}
# Labels that later stages read as numbers (weeks, mm per pixel); empty means unknown.
NUMERIC_LABELS = ("ga_weeks", "pixel_size_mm")


@dataclasses.dataclass(frozen=True)
class SpecItem:
    """One input stack.

    path: absolute path of the file or frame folder; domain: scanner/site name; patient_id: None when it must
    come from DICOM PatientID or the file-name pattern; video_id: unique within (domain, patient); labels:
    scalar labels of the whole item; frame_labels: optional CSV ``frame_index,<label>...``; aligned: name ->
    absolute path of a stack aligned pixel by pixel and frame by frame with ``path``.
    """

    path: Path
    domain: str
    patient_id: str | None = None
    video_id: str = ""
    labels: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    frame_labels: Path | None = None
    aligned: Mapping[str, Path] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A whole input dataset: items, an optional name and patient-id pattern, and where it was read from.

    paired: the domains show the same patients (e.g. one phantom rendered by several scanner profiles), so a
    patient may appear in several domains and is put in the same split in all of them; otherwise a patient
    in two domains is an error.
    """

    items: tuple[SpecItem, ...]
    name: str = "dataset"
    patient_pattern: str | None = None
    source: str = ""
    paired: bool = False

    @property
    def domains(self) -> list[str]:
        """Domain names in order of first appearance."""
        return list(dict.fromkeys(it.domain for it in self.items))


def is_label_name(name: str) -> bool:
    """True when an aligned stack called ``name`` is a label map (nearest-neighbour resize, values kept)."""
    return name.startswith("label") or name.endswith("_mask") or name.endswith("_labels")


def check_numeric_labels(labels: Mapping[str, Any], where: str) -> None:
    """Refuse a ``ga_weeks`` or ``pixel_size_mm`` label that is not a positive finite number (None or "" pass as
    unknown); ``where`` names the item or file in the message."""
    for key in NUMERIC_LABELS:
        value = labels.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            number = math.nan if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise SonoshiftError(f"{where} label {key!r} must be a positive number, got {value!r}.")


def check_name(value: str, what: str, where: str) -> str:
    """Return ``value`` if it is usable as a folder name (letters, digits, space . _ + -), else raise."""
    value = str(value)
    if not _NAME_RE.match(value) or value in (".", ".."):
        raise SonoshiftError(
            f"{where}: {what} {value!r} must start with a letter or digit and hold only letters, digits, "
            "spaces and . _ + - (it becomes a folder name)."
        )
    return value


def patient_from_name(name: str, pattern: str | None) -> str | None:
    """Group 1 (or the whole match when there is no group) of ``pattern`` searched in ``name``; None if no match."""
    if not pattern:
        return None
    try:
        m = re.search(pattern, name)
    except re.error as e:
        raise SonoshiftError(f"patient_pattern {pattern!r} is not a valid regular expression ({e}).") from None
    if m is None:
        return None
    return m.group(1) if m.groups() else m.group(0)


def resolve_patient_id(item: SpecItem, dicom_patient_id: str | None, pattern: str | None) -> str:
    """The patient of ``item``: the spec's id, else DICOM PatientID, else ``pattern`` on the file name, else
    the video id (each file its own patient). Returned as a validated folder-safe string."""
    pid = item.patient_id
    if pid in (None, "") and dicom_patient_id not in (None, "") and str(dicom_patient_id).strip():
        # DICOM ids may hold ^ / and other characters that cannot be folder names: replace them by _
        pid = re.sub(r"[^A-Za-z0-9 ._+-]", "_", str(dicom_patient_id).strip())
        pid = pid if pid[0].isalnum() else f"p{pid}"
    if pid in (None, ""):
        pid = patient_from_name(item.path.name, pattern or DEFAULT_PATIENT_PATTERN)
    if pid in (None, ""):
        pid = item.video_id
    return check_name(str(pid), "patient id", str(item.path))


def _video_id(path: Path) -> str:
    return path.stem if path.is_file() else path.name


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())


def list_folder_items(folder: Path) -> list[Path]:
    """Inputs inside one domain folder: supported files and sub-folders of frames, sorted, hidden ones skipped."""
    out = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES:
            out.append(p)
        elif _is_frame_folder(p):
            out.append(p)
    return out


def spec_from_folders(folders: Sequence[str | Path], patient_pattern: str | None = None) -> DatasetSpec:
    """One domain per folder (the folder name is the domain); every supported file or frame sub-folder is an item.

    Raises SonoshiftError for a missing, non-folder or empty folder, or two folders with the same name.
    """
    items: list[SpecItem] = []
    seen: dict[str, Path] = {}
    for f in folders:
        folder = Path(f).expanduser().resolve()
        if not folder.exists():
            raise SonoshiftError(f"input folder {folder} does not exist.")
        if not folder.is_dir():
            raise SonoshiftError(f"input {folder} is not a folder (give one folder per domain or a spec YAML).")
        domain = check_name(folder.name, "domain name", str(folder))
        if domain in seen:
            raise SonoshiftError(f"input folders {seen[domain]} and {folder} have the same name {domain!r}.")
        seen[domain] = folder
        paths = list_folder_items(folder)
        if not paths:
            raise SonoshiftError(
                f"input folder {folder} holds no videos, DICOM files, images, .npy stacks or frame folders."
            )
        for p in paths:
            items.append(SpecItem(path=p, domain=domain, video_id=check_name(_video_id(p), "video id", str(p))))
    return DatasetSpec(
        items=tuple(items),
        name="+".join(seen),
        patient_pattern=patient_pattern,
        source=", ".join(str(p) for p in seen.values()),
    )


def _resolve_path(base: Path, value: Any, where: str) -> Path:
    if not isinstance(value, (str, Path)) or str(value) == "":
        raise SonoshiftError(f"{where} must be a path, got {value!r}.")
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.exists():
        raise SonoshiftError(f"{where}: {p} does not exist.")
    return p.resolve()


def spec_from_dict(data: Mapping[str, Any], base: Path, where: str = "spec") -> DatasetSpec:
    """Build a DatasetSpec from a parsed spec mapping; relative paths are taken from ``base``."""
    if not isinstance(data, Mapping):
        raise SonoshiftError(f"{where} must hold a mapping with an 'items' list.")
    # Other top-level keys (e.g. the simulator's own metadata) are allowed and ignored.
    raw = data.get("items")
    if not isinstance(raw, list) or not raw:
        raise SonoshiftError(f"{where} has no 'items' list (or it is empty).")
    pattern = data.get("patient_pattern")
    if pattern is not None:
        patient_from_name("", str(pattern))  # validates the regex early
    items = []
    for i, it in enumerate(raw):
        w = f"{where} item {i}"
        if not isinstance(it, Mapping):
            raise SonoshiftError(f"{w} must be a mapping with at least 'path' and 'domain'.")
        bad = set(it) - _ITEM_KEYS
        if bad:
            raise SonoshiftError(f"{w} has unknown key {sorted(bad)[0]!r} (known: {', '.join(sorted(_ITEM_KEYS))}).")
        if "domain" not in it:
            raise SonoshiftError(f"{w} has no 'domain'.")
        path = _resolve_path(base, it.get("path"), f"{w} path")
        labels = it.get("labels") or {}
        if not isinstance(labels, Mapping) or any(isinstance(v, (list, dict)) for v in labels.values()):
            raise SonoshiftError(f"{w} 'labels' must be a mapping of scalar values.")
        check_numeric_labels(labels, w)
        aligned_raw = it.get("aligned") or {}
        if not isinstance(aligned_raw, Mapping):
            raise SonoshiftError(f"{w} 'aligned' must be a mapping name -> path.")
        aligned = {}
        for name, p in aligned_raw.items():
            check_name(str(name), "aligned stack name", w)
            if str(name) in ("frames", "masks", "image", "mask"):
                raise SonoshiftError(f"{w}: aligned stack name {name!r} is reserved.")
            aligned[str(name)] = _resolve_path(base, p, f"{w} aligned '{name}'")
        fl = it.get("frame_labels")
        pid = it.get("patient_id")
        items.append(
            SpecItem(
                path=path,
                domain=check_name(str(it["domain"]), "domain name", w),
                patient_id=None if pid in (None, "") else check_name(str(pid), "patient id", w),
                video_id=check_name(str(it.get("video_id") or _video_id(path)), "video id", w),
                labels=dict(labels),
                frame_labels=None if fl in (None, "") else _resolve_path(base, fl, f"{w} frame_labels"),
                aligned=aligned,
            )
        )
    return DatasetSpec(
        items=tuple(items),
        name=str(data.get("name") or base.name),
        patient_pattern=None if pattern is None else str(pattern),
        source=where,
        paired=_as_bool(data.get("paired", False), f"{where} 'paired'"),
    )


def _as_bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    raise SonoshiftError(f"{where} must be true or false, got {value!r}.")


def load_spec(path: str | Path) -> DatasetSpec:
    """Read a spec YAML (formats.md section 1); a folder is read through its ``sonoshift_spec.yaml``."""
    path = Path(path).expanduser().resolve()
    if path.is_dir():
        path = path / SPEC_FILENAME
    if not path.is_file():
        raise SonoshiftError(f"dataset spec {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise SonoshiftError(f"dataset spec {path} is not valid YAML ({e.__class__.__name__}).") from None
    return spec_from_dict(data, path.parent, where=f"dataset spec {path}")


def resolve_inputs(inputs: Sequence[str | Path], patient_pattern: str | None = None) -> DatasetSpec:
    """Turn the CLI inputs into a spec: one spec YAML, one folder holding ``sonoshift_spec.yaml``, or two or
    more folders (one per domain). ``patient_pattern`` overrides the spec's pattern when given."""
    paths = [Path(p).expanduser() for p in inputs]
    if not paths:
        raise SonoshiftError("no input given: pass two or more domain folders or a dataset spec YAML.")
    if len(paths) == 1:
        p = paths[0]
        if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
            spec = load_spec(p)
        elif p.is_dir() and (p / SPEC_FILENAME).is_file():
            spec = load_spec(p / SPEC_FILENAME)
        elif not p.exists():
            raise SonoshiftError(f"input {p} does not exist.")
        else:
            raise SonoshiftError(
                f"input {p} is a single folder without {SPEC_FILENAME}: give two or more domain folders or a spec YAML."
            )
        if patient_pattern:
            spec = dataclasses.replace(spec, patient_pattern=patient_pattern)
        return spec
    for p in paths:
        if p.is_file() and p.suffix.lower() in (".yaml", ".yml"):
            raise SonoshiftError(f"spec {p} must be the only input (got {len(paths)} inputs).")
    return spec_from_folders(paths, patient_pattern)


def spec_to_dict(spec: DatasetSpec, base: Path | None = None) -> dict[str, Any]:
    """The spec as a YAML-ready mapping (paths relative to ``base`` when given and possible)."""

    def rel(p: Path) -> str:
        if base is not None:
            try:
                return p.relative_to(base).as_posix()
            except ValueError:
                pass
        return p.as_posix()

    items = []
    for it in spec.items:
        d: dict[str, Any] = {"path": rel(it.path), "domain": it.domain, "video_id": it.video_id}
        if it.patient_id is not None:
            d["patient_id"] = it.patient_id
        if it.labels:
            d["labels"] = dict(it.labels)
        if it.frame_labels is not None:
            d["frame_labels"] = rel(it.frame_labels)
        if it.aligned:
            d["aligned"] = {k: rel(v) for k, v in it.aligned.items()}
        items.append(d)
    out: dict[str, Any] = {"name": spec.name}
    if spec.paired:
        out["paired"] = True
    if spec.patient_pattern:
        out["patient_pattern"] = spec.patient_pattern
    out["items"] = items
    return out


def check_patients(domains_by_patient: Mapping[str, set[str]], where: str) -> None:
    """Raise when a patient appears in two domains (its frames would leak across the split of both)."""
    for pid in sorted(domains_by_patient):
        ds = sorted(domains_by_patient[pid])
        if len(ds) > 1:
            raise SonoshiftError(
                f"{where}: patient {pid!r} appears in two domains ({ds[0]!r} and {ds[1]!r}); give it distinct ids per domain."
            )
