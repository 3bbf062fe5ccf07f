from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from isthmus.bottlenecks import GaussianConfig
from isthmus.config import Config, ConfigError
from isthmus.nn import MLPConfig


@dataclass
class Inner(Config):
    width: int = 4


@dataclass
class Outer(Config):
    name: str = "x"
    rate: float = 0.1
    sizes: list[int] = field(default_factory=lambda: [1, 2])
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None


def test_json_round_trip(tmp_path):
    cfg = Outer(name="y", rate=2, sizes=[3], inner=Inner(width=9), maybe=5)
    assert isinstance(cfg.rate, float)
    cfg.save(tmp_path / "c.json")
    assert Outer.load(tmp_path / "c.json") == cfg
    assert json.loads(cfg.to_json())["inner"] == {"width": 9}


def test_yaml_load(tmp_path):
    (tmp_path / "c.yaml").write_text("name: z\ninner:\n  width: 3\n")
    assert Outer.load(tmp_path / "c.yaml").inner.width == 3


def test_unknown_field_named():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['widht'\]"):
        Inner.from_dict({"widht": 3})


def test_wrong_type_named():
    with pytest.raises(ConfigError, match=r"Outer.sizes\[1\]: expected an integer"):
        Outer(sizes=[1, "two"])
    with pytest.raises(ConfigError, match="MLPConfig.out_activation: expected a string, got True"):
        MLPConfig.from_dict({"in_dim": 3, "hidden": [2], "dropout": 0.0, "norm": "none", "init": "default",
                             "activation": "relu", "out_activation": True})


def test_overrides_parse_yaml_values():
    cfg = Outer().with_overrides(["inner.width=7", "sizes=[4, 5]", "maybe=null", "rate=1e-3"])
    assert cfg.inner.width == 7 and cfg.sizes == [4, 5] and cfg.maybe is None and cfg.rate == 1e-3
    with pytest.raises(ConfigError, match="unknown field 'nope'"):
        Outer().with_overrides({"inner.nope": 1})
    with pytest.raises(ConfigError, match="key=value"):
        Outer().with_overrides(["novalue"])


def test_value_checks():
    with pytest.raises(ConfigError, match="beta must be >= 0"):
        GaussianConfig(beta=-1)
    with pytest.raises(ConfigError, match="dropout"):
        MLPConfig(dropout=1.5)
    with pytest.raises(ConfigError, match="activation"):
        MLPConfig(activation="swishy")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Outer.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid"):
        Outer.load(tmp_path / "bad.json")
