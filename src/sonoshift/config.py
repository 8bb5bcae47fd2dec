"""Frozen dataclass configs loaded from YAML, with typed dotted overrides (``train.lr=1e-4``).

Every stage declares its configuration as a frozen dataclass (nested dataclasses allowed). A config is built
from defaults, then a YAML file, then ``key=value`` overrides, each value parsed with the field's type. Unknown
keys and unparsable values are reported with the key's full dotted name.

Config classes derive from :class:`Validated`: every value is checked when the object is built (from YAML,
overrides or Python), so a bad value stops with one sentence naming its key instead of a hang or a traceback
later. Numeric fields declare their range in the annotation (``batch_size: PosInt = 1``,
``lr: PosFloat = 2e-4``, ``beta1: Annotated[float, Range(0, 1, hi_open=True)] = 0.5``); NaN and infinity are
refused everywhere; Literal fields accept only their listed values.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from sonoshift.errors import SonoshiftError

C = TypeVar("C")


class ConfigValueError(SonoshiftError):
    """A config value outside what its field allows; ``key`` is the (dotted) field name."""

    def __init__(self, key: str, reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"config key '{key}' {reason}.")

    def under(self, prefix: str) -> ConfigValueError:
        """The same error with the key seen from a parent config (``prefix`` ends with a dot)."""
        return ConfigValueError(prefix + self.key, self.reason) if prefix else self


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field: ``lo`` <= v <= ``hi`` (``lo_open``/``hi_open``: strict); None: unbounded."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return "finite"

    def allows(self, v: float) -> bool:
        if not math.isfinite(v):
            return False
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return False
        return not (self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)))


PosInt = Annotated[int, Range(1)]  # 1, 2, ...
NonNegInt = Annotated[int, Range(0)]  # 0, 1, ... (0 often means "off" or "all")
PosFloat = Annotated[float, Range(0, lo_open=True)]  # > 0
NonNegFloat = Annotated[float, Range(0)]  # >= 0
UnitFloat = Annotated[float, Range(0, 1)]  # [0, 1]: fractions and probabilities
AnyFloat = Annotated[float, Range()]  # any finite number (e.g. a gain in dB)
Seed = Annotated[int, Range(0, 2**63 - 1)]  # numpy and torch seeds are non-negative


def _type_hints(cls: type, extras: bool = False) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=extras)


def field_range(tp: Any) -> Range | None:
    """The Range declared in an ``Annotated[...]`` type (looking inside ``X | None``), None when there is none."""
    if typing.get_origin(tp) is Annotated:
        return next((m for m in tp.__metadata__ if isinstance(m, Range)), None)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            r = field_range(arg)
            if r is not None:
                return r
    return None


def _check_value(value: Any, tp: Any, key: str) -> None:
    """Raise ConfigValueError when ``value`` breaks the range, finiteness or Literal choices of type ``tp``."""
    if value is None:
        return
    rng = field_range(tp)
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp
    if typing.get_origin(base) is typing.Literal:
        if value not in typing.get_args(base):
            raise ConfigValueError(key, f"must be one of {list(typing.get_args(base))}, got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, tuple) and typing.get_origin(base) is tuple:
            args = typing.get_args(base)
            item_types = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
            for i, (v, t) in enumerate(zip(value, item_types)):
                _check_value(v, t, f"{key}[{i}]")
        return
    if rng is None:
        rng = Range()
    if not rng.allows(float(value)):
        raise ConfigValueError(key, f"must be {rng.describe()}, got {value!r}")


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every field of the config dataclass ``cfg`` (nested configs too) against its declared type:
    numeric ranges (:class:`Range`), finiteness, Literal choices. Raises ConfigValueError naming the key."""
    hints = _type_hints(type(cfg), extras=True)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            if not isinstance(value, Validated):
                validate(value, f"{prefix}{f.name}.")
            continue
        _check_value(value, hints.get(f.name, Any), prefix + f.name)


class Validated:
    """Base of config dataclasses: the values are checked (:func:`validate`) when the object is built.

    A subclass with its own ``__post_init__`` (cross-field rules) calls ``super().__post_init__()`` first."""

    def __post_init__(self) -> None:
        validate(self)


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
    try:
        obj = cls(**kwargs)
    except ConfigValueError as e:
        raise e.under(prefix) from None
    if not isinstance(obj, Validated):
        try:
            validate(obj)
        except ConfigValueError as e:
            raise e.under(prefix) from None
    return obj


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
    except UnicodeDecodeError:
        raise SonoshiftError(f"config file {path} is not a text file (not UTF-8): give a YAML file.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SonoshiftError(f"config file {path} must hold a mapping at the top level.")
    return data


def config_dirs() -> list[Path]:
    """Where named configs live: ``configs/`` shipped inside the package (a link to the repository's
    ``configs/`` in a checkout, a copy in an installed wheel)."""
    return [Path(__file__).resolve().parent / "configs"]


def named_configs() -> list[str]:
    """The named configs (``cpu/cyclegan``, ``paper/cascade_t250_e125``, ...)."""
    names = set()
    for d in config_dirs():
        if d.is_dir():
            names |= {p.relative_to(d).with_suffix("").as_posix() for p in d.rglob("*.yaml")}
    return sorted(names)


def find_config(spec: str | Path) -> Path:
    """A config file from a path (``configs/cpu/cyclegan.yaml``, ``my.yaml``) or a name (``cpu/cyclegan``),
    so named configs work from any folder. Raises SonoshiftError naming the known configs."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    name = path.as_posix()
    name = name[len("configs/"):] if name.startswith("configs/") else name
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    for d in config_dirs():
        cand = d / f"{name}.yaml"
        if cand.is_file():
            return cand
    raise SonoshiftError(f"config file {spec} does not exist and is not a named config "
                         f"(named: {', '.join(named_configs())}).")


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

    ``path`` may name a shipped config (``cpu/cyclegan``). Overrides are typed by the dataclass fields:
    ``split.seed=3`` becomes an int, ``train.lr=1e-4`` a float.
    """
    path = find_config(path) if path is not None else None
    from_file: dict[str, Any] = read_yaml(path) if path is not None else {}
    tree: dict[str, Any] = merge({}, from_file)
    set_here = [key for key, _ in parse_overrides(overrides)]
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value)
    # Merge onto defaults so that a nested override keeps the sibling defaults.
    base = to_dict(cls())
    try:
        return from_dict(cls, merge(base, tree))
    except SonoshiftError as e:
        key = getattr(e, "key", None) or _quoted_key(str(e))
        if path is not None and key and _in_tree(from_file, key) and not any(
            key == k or key.startswith(k + ".") or key.startswith(k + "[") for k in set_here
        ):
            raise SonoshiftError(f"config file {path}: {e}") from None
        raise


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a`` updated by ``b``, nested mappings merged key by key."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


def _quoted_key(message: str) -> str | None:
    m = re.search(r"config key '([^']+)'", message)
    return m.group(1) if m else None


def _in_tree(tree: Mapping[str, Any], dotted: str) -> bool:
    node: Any = tree
    for part in re.sub(r"\[\d+\]$", "", dotted).split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def save_config(cfg: Any, path: str | Path) -> None:
    """Write ``cfg`` as YAML (atomically)."""
    from sonoshift.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))

