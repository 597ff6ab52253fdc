"""params.yaml is the one source of recipe values: the schema's defaults equal it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.project import ROOT
from unetpp.errors import UserError
from unetpp.params import Params, load_params


def test_schema_defaults_equal_params_yaml() -> None:
    shipped = load_params(ROOT / "params.yaml").model_dump(by_alias=True)
    defaults = Params().model_dump(by_alias=True)
    differ = {f"{s}.{k}": (defaults[s][k], v) for s, section in shipped.items() for k, v in section.items()}
    differ = {k: v for k, v in differ.items() if v[0] != v[1]}
    assert not differ, f"schema default != params.yaml: {differ}"


def test_bad_params_are_user_errors_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("train:\n  lr: -1\n")
    with pytest.raises(UserError, match=r"train\.lr"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(UserError, match="params file not found"):
        load_params(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "text, field",
    [
        ("model:\n  in_channels: 0\n", "model.in_channels"),
        ("train:\n  head_weights: [1, 1]\n", "train.head_weights has 2 weights"),
    ],
)
def test_params_that_would_fail_later_fail_at_load(tmp_path: Path, text: str, field: str) -> None:
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(UserError, match=field):
        load_params(tmp_path / "params.yaml")
