"""Typed schema of params.yaml: a wrong key or value fails early, naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ModelParams(BaseModel):
    """The network: architecture and its constructor arguments."""

    model_config = ConfigDict(extra="forbid")

    arch: Literal["unetpp", "unet"] = "unetpp"
    widths: tuple[int, int, int, int, int] = (32, 64, 128, 256, 512)
    norm: Literal["batch", "instance", "none"] = "batch"
    upsample: Literal["transpose", "bilinear"] = "transpose"
    in_channels: int = Field(3, ge=1)
    class_names: list[str] = Field(default_factory=lambda: ["disc", "cup"], min_length=1)
    deep_supervision: bool = True
    input_size: int = Field(256, ge=16, description="side of the square images trained on and served")

    @model_validator(mode="after")
    def _unique_names(self) -> ModelParams:
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique; got {self.class_names}")
        return self

    def build_kwargs(self) -> dict[str, Any]:
        """Constructor arguments of `unetpp.model.build_model(self.arch, ...)`."""
        kwargs: dict[str, Any] = dict(
            in_channels=self.in_channels,
            num_classes=len(self.class_names),
            widths=self.widths,
            norm=self.norm,
            upsample=self.upsample,
        )
        if self.arch == "unetpp":
            kwargs["deep_supervision"] = self.deep_supervision
        return kwargs


class Params(BaseModel):
    """The whole params.yaml."""

    model_config = ConfigDict(extra="forbid")

    model: ModelParams = Field(default_factory=ModelParams)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ValueError(f"invalid {path}:\n{err}") from None
