"""Frozen dataclass configs loaded from YAML, with typed dotted overrides (``train.lr=1e-4``).

Every stage declares its configuration as a frozen dataclass (nested dataclasses allowed). A config is built
from defaults, then a YAML file, then ``key=value`` overrides, each value parsed with the field's type. Unknown
keys and unparsable values are reported with the key's full dotted name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from sonoshift.errors import SonoshiftError

C = TypeVar("C")


def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_scalar(text: str) -> Any:
    """Parse one override value with YAML rules (numbers, bools, null, lists)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to ``tp`` or raise a SonoshiftError naming ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except SonoshiftError as e:
                errors.append(str(e))
        raise SonoshiftError(f"config key '{key}': cannot read {value!r} as {tp}.")
    if origin is typing.Literal:
        if value in args:
            return value
        raise SonoshiftError(f"config key '{key}' must be one of {list(args)}, got {value!r}.")
    if dataclasses.is_dataclass(tp):
        if isinstance(tp, type) and isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise SonoshiftError(f"config key '{key}' must be a mapping, got {value!r}.")
        return _build(tp, value, prefix=f"{key}.")
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise SonoshiftError(f"config key '{key}' needs {len(args)} values, got {len(value)}.")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if (origin is tuple or tp is tuple) else out
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise SonoshiftError(f"config key '{key}' must be a mapping, got {value!r}.")
        if len(args) == 2:  # dict[K, V]: each value typed like a field
            return {k: _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise SonoshiftError(f"config key '{key}' must be true or false, got {value!r}.")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise SonoshiftError(f"config key '{key}' must be an integer, got {value!r}.")
        try:
            f = float(value)
        except ValueError:
            raise SonoshiftError(f"config key '{key}' must be an integer, got {value!r}.") from None
        if f != int(f):
            raise SonoshiftError(f"config key '{key}' must be an integer, got {value!r}.")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise SonoshiftError(f"config key '{key}' must be a number, got {value!r}.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SonoshiftError(f"config key '{key}' must be a number, got {value!r}.") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise SonoshiftError(f"config key '{key}' must be a string, got {value!r}.")
        return str(value)
    if tp is Path:
        return Path(str(value))
    return value


def _build(cls: type[C], data: Mapping[str, Any], prefix: str = "") -> C:
    hints = _type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SonoshiftError(
            f"unknown config key '{prefix}{unknown[0]}' (known keys: {', '.join(sorted(names))})."
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def from_dict(cls: type[C], data: Mapping[str, Any] | None) -> C:
    """Build the dataclass ``cls`` from a (nested) mapping; missing keys keep their defaults."""
    return _build(cls, data or {})


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict (tuples become lists) for YAML/JSON."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return conv(cfg)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            node[p] = nxt
        node = nxt
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """Split ``key=value`` strings into (dotted key, YAML-parsed value) pairs."""
    out = []
    for item in overrides:
        if "=" not in item:
            raise SonoshiftError(f"override '{item}' is not of the form key=value (e.g. split.seed=3).")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key:
            raise SonoshiftError(f"override '{item}' has an empty key.")
        out.append((key, _parse_scalar(raw)))
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise SonoshiftError(f"config file {path} does not exist.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise SonoshiftError(f"config file {path} is not valid YAML ({e.__class__.__name__}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SonoshiftError(f"config file {path} must hold a mapping at the top level.")
    return data


def apply_overrides(cfg: C, overrides: Sequence[str]) -> C:
    """``cfg`` (a config dataclass instance) with ``key=value`` overrides applied, typed like :func:`load_config`."""
    if not overrides:
        return cfg
    tree: dict[str, Any] = to_dict(cfg)
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    return from_dict(type(cfg), tree)


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Defaults of ``cls``, updated by the YAML file at ``path``, then by ``key=value`` overrides.

    Overrides are typed by the dataclass fields: ``split.seed=3`` becomes an int, ``train.lr=1e-4`` a float.
    """
    tree: dict[str, Any] = read_yaml(path) if path is not None else {}
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    # Merge onto defaults so that a nested override keeps the sibling defaults.
    base = to_dict(cls())

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out

    return from_dict(cls, merge(base, tree))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as YAML (atomically)."""
    from sonoshift.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

