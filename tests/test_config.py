from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest

from sonoshift.config import load_config, save_config, to_dict
from sonoshift.errors import SonoshiftError


@dataclasses.dataclass(frozen=True)
class Split:
    seed: int = 0
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)


@dataclasses.dataclass(frozen=True)
class Cfg:
    size: int = 256
    lr: float = 2e-4
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    cache: bool = True
    tag: str | None = None
    split: Split = dataclasses.field(default_factory=Split)


def test_defaults_yaml_and_typed_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("size: 128\nsplit:\n  fractions: [0.5, 0.25, 0.25]\n")
    cfg = load_config(Cfg, p, ["split.seed=3", "lr=1e-4", "cache=false", "mode=b", "tag=null"])
    assert cfg.size == 128 and isinstance(cfg.size, int)
    assert cfg.split.seed == 3 and cfg.split.fractions == (0.5, 0.25, 0.25)
    assert cfg.lr == pytest.approx(1e-4) and cfg.cache is False and cfg.mode == "b" and cfg.tag is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.size = 1  # type: ignore[misc]


def test_round_trip(tmp_path: Path) -> None:
    cfg = load_config(Cfg, None, ["split.seed=7", "name=hello"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(Cfg, tmp_path / "c.yaml") == cfg
    assert to_dict(cfg)["split"]["fractions"] == [0.7, 0.15, 0.15]


@pytest.mark.parametrize(
    "override, words",
    [
        ("split.sed=3", "split.sed"),
        ("size=abc", "size"),
        ("size=1.5", "size"),
        ("mode=c", "mode"),
        ("noequals", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(override: str, words: str) -> None:
    with pytest.raises(SonoshiftError, match=words.replace(".", r"\.")):
        load_config(Cfg, None, [override])


def test_missing_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SonoshiftError, match="does not exist"):
        load_config(Cfg, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: [1, 2\n")
    with pytest.raises(SonoshiftError, match="not valid YAML"):
        load_config(Cfg, bad)
    png = tmp_path / "image.png"  # a binary file given as the config
    png.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(SonoshiftError, match="image.png is not a text file"):
        load_config(Cfg, png)
