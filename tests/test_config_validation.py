"""Every config field is validated when the config is built: a sweep of invalid values over every numeric field
of every config class (found by walking the package), each refused with one sentence naming the dotted key."""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
import types
import typing
from pathlib import Path

import pytest

import sonoshift
from sonoshift.config import Range, Validated, field_range, load_config
from sonoshift.errors import SonoshiftError


def _modules() -> list[types.ModuleType]:
    out = []
    for info in pkgutil.walk_packages(sonoshift.__path__, "sonoshift."):
        if info.name.endswith("__main__") or ".cli" in info.name:
            continue
        out.append(importlib.import_module(info.name))
    return out


def _nested(tp: typing.Any) -> list[type]:
    """Dataclass types inside a field type (X, X | None, tuple[X, ...], Annotated[X, ...])."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return [tp]
    return [c for arg in typing.get_args(tp) for c in _nested(arg)]


def config_classes() -> list[type]:
    """Frozen dataclasses named *Config anywhere in sonoshift, and every dataclass reachable from their fields."""
    todo = [o for m in _modules() for o in vars(m).values()
            if isinstance(o, type) and dataclasses.is_dataclass(o) and o.__module__ == m.__name__
            and o.__name__.endswith("Config")]
    seen: dict[str, type] = {}
    while todo:
        cls = todo.pop()
        name = f"{cls.__module__}.{cls.__qualname__}"
        if name in seen:
            continue
        seen[name] = cls
        for tp in typing.get_type_hints(cls, include_extras=True).values():
            todo += _nested(tp)
    return [seen[k] for k in sorted(seen)]


def _base(tp: typing.Any) -> typing.Any:
    """int / float for a numeric field type (through Annotated and X | None), else None."""
    if typing.get_origin(tp) is typing.Annotated:
        return _base(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        found = [_base(a) for a in typing.get_args(tp) if a is not type(None)]
        return found[0] if len(found) == 1 else None
    return tp if tp in (int, float) else None


def numeric_fields() -> list[tuple[type, str, type, Range | None]]:
    out = []
    for cls in config_classes():
        hints = typing.get_type_hints(cls, include_extras=True)
        for f in dataclasses.fields(cls):
            base = _base(hints[f.name])
            if f.init and base is not None:
                out.append((cls, f.name, base, field_range(hints[f.name])))
    return out


def invalid_values(base: type, rng: Range) -> list[float]:
    """Values just outside ``rng``, plus NaN and infinities for floats."""
    step = 1 if base is int else 1e-6
    bad: list[float] = []
    if rng.lo is not None:
        bad.append(rng.lo if rng.lo_open else rng.lo - step)
        bad.append(rng.lo - 1e9 if base is float else int(rng.lo) - 1000)
    if rng.hi is not None:
        bad.append(rng.hi if rng.hi_open else rng.hi + step)
    if base is float:
        bad += [math.nan, math.inf, -math.inf]
    if base is int:
        bad = [int(v) for v in bad if float(v) == int(v)]
    return bad


def default(cls: type):
    try:
        return cls()
    except TypeError:
        pytest.skip(f"{cls.__name__} has required fields")


def test_the_sweep_finds_the_config_classes() -> None:
    names = {c.__name__ for c in config_classes()}
    assert {"SegmenterTrainConfig", "ClassifierTrainConfig", "PrepareConfig", "CycleGANConfig", "DDGANConfig", "CascadeConfig", "SimConfig",
            "EvaluateConfig", "ReportConfig", "CropConfig", "Profile", "Chain"} <= names
    assert len(numeric_fields()) > 100


@pytest.mark.parametrize("cls", config_classes(), ids=lambda c: c.__name__)
def test_every_config_class_validates_itself(cls: type) -> None:
    assert issubclass(cls, Validated), f"{cls.__module__}.{cls.__name__} must derive from sonoshift.config.Validated"
    default(cls)  # the defaults themselves are valid


@pytest.mark.parametrize("cls,name,base,rng", numeric_fields(),
                         ids=[f"{c.__name__}.{n}" for c, n, _, _ in numeric_fields()])
def test_invalid_numeric_values_are_refused_naming_the_key(cls: type, name: str, base: type, rng: Range | None) -> None:
    assert rng is not None, (f"{cls.__module__}.{cls.__name__}.{name} declares no range: annotate it "
                             "(PosInt, NonNegFloat, Annotated[float, Range(...)], ...)")
    cfg = default(cls)
    bad = invalid_values(base, rng)
    assert bad, f"{cls.__name__}.{name}: the sweep has no invalid value to try"
    for value in bad:
        with pytest.raises(SonoshiftError, match=rf"config key '{name}' must be"):
            dataclasses.replace(cfg, **{name: value})
        # through the YAML/override path the message names the dotted key (here at the top level)
        text = "nan" if isinstance(value, float) and math.isnan(value) else (
            ".inf" if value == math.inf else "-.inf" if value == -math.inf else repr(value))
        with pytest.raises(SonoshiftError, match=rf"^config key '{name}' must be [^\n]*\.$"):
            load_config(cls, None, [f"{name}={text}"])
    ok = rng.lo if rng.lo is not None and not rng.lo_open else None
    if ok is not None:  # the bound itself is allowed (cross-field rules aside)
        try:
            dataclasses.replace(cfg, **{name: base(ok)})
        except SonoshiftError as e:
            assert f"'{name}'" not in str(e), str(e)


@pytest.mark.parametrize("override,key", [
    ("train.batch_size=-2", "train.batch_size"), ("train.batch_size=0", "train.batch_size"),
    ("train.accum_steps=0", "train.accum_steps"), ("train.lr=-1", "train.lr"), ("train.lr=nan", "train.lr"),
    ("model.ngf=0", "model.ngf"), ("train.beta1=1", "train.beta1"), ("train.precision=fp8", "train.precision"),
])
def test_issue_cases_name_the_nested_key(override: str, key: str) -> None:
    from sonoshift.methods.cyclegan import CycleGANConfig

    with pytest.raises(SonoshiftError, match=rf"^config key '{key}' must be"):
        load_config(CycleGANConfig, None, [override])


def test_batch_size_minus_two_stops_at_once_on_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It used to spin at 100% CPU forever; now the config is refused before any data is read."""
    from sonoshift.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["train", "cyclegan", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "train.batch_size=-2"])
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.endswith("\nerror: config key 'train.batch_size' must be >= 1, got -2.\n")
    assert not (tmp_path / "run").exists()


def test_a_bad_value_in_a_yaml_file_names_the_file(tmp_path: Path) -> None:
    from sonoshift.methods.cyclegan import CycleGANConfig

    f = tmp_path / "c.yaml"
    f.write_text("train:\n  accum_steps: 0\n")
    with pytest.raises(SonoshiftError, match=r"^config file .*c.yaml: config key 'train.accum_steps' must be >= 1"):
        load_config(CycleGANConfig, f)
    with pytest.raises(SonoshiftError, match=r"^config key 'train.accum_steps' must be >= 1, got -1"):
        load_config(CycleGANConfig, f, ["train.accum_steps=-1"])  # the override set it, not the file
