"""Typed schema of params.yaml: a wrong key or value fails early, naming the field.

params.yaml is the one source of recipe values. The defaults here equal it (tests/test_params.py
compares them), so that code building `Params` from a partial dict gets the recipe that ships.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from unetpp.errors import UserError


class ModelParams(BaseModel):
    """The network: architecture and its constructor arguments."""

    model_config = ConfigDict(extra="forbid")

    arch: Literal["unetpp", "unet"] = "unetpp"
    widths: tuple[int, int, int, int, int] = (16, 32, 64, 128, 256)
    norm: Literal["batch", "instance", "none"] = "batch"
    upsample: Literal["transpose", "bilinear"] = "transpose"
    in_channels: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        "auto", description="auto: the images' channel count (the plan's fingerprint); 1 from RGB: luma"
    )
    class_names: list[str] = Field(default_factory=lambda: ["disc", "cup"], min_length=1)
    deep_supervision: bool = True

    @model_validator(mode="after")
    def _unique_names(self) -> ModelParams:
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class_names must be unique; got {self.class_names}")
        return self

    def build_kwargs(self, in_channels: int) -> dict[str, Any]:
        """Constructor arguments of `unetpp.nn.networks.build_model(self.arch, ...)`; `in_channels` as the plan
        resolved it (`unetpp.planning.recipe.intensity_rule`)."""
        kwargs: dict[str, Any] = dict(
            in_channels=in_channels,
            num_classes=len(self.class_names),
            widths=self.widths,
            norm=self.norm,
            upsample=self.upsample,
        )
        if self.arch == "unetpp":
            kwargs["deep_supervision"] = self.deep_supervision
        return kwargs


class SyntheticParams(BaseModel):
    """The procedural fundus generator (the embedded default)."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(160, ge=3)
    size: int = Field(256, ge=32, description="side of the generated photographs")
    seed: int = 0


class DrishtiParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, gt=0, le=1, description="fraction of experts marking a pixel")


class FolderParams(BaseModel):
    """images/ + masks/ matched by stem; how mask values become classes."""

    model_config = ConfigDict(extra="forbid")

    mask_mode: Literal["auto", "binary", "labels", "per_class", "instance"] = Field(
        "auto",
        description="auto: labels when label_values are set, per_class when masks/<class>/ exists for each class, "
        "else binary (one class, 0 and one foreground value)",
    )
    label_values: dict[str, list[int]] = Field(default_factory=dict, description="class -> mask values")
    background: Literal["auto"] | int = Field(
        "auto", description="labels: the background's mask value; auto: the one value no class names (REFUGE: 255)"
    )


class DataParams(BaseModel):
    """Where the data comes from and how it is prepared."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["synthetic", "drishti", "folder"] = "synthetic"
    path: str = Field(
        "src/unetpp/data/synthetic.py",
        description="the source (folder, drishti: its folder), a DVC dependency of ingest; synthetic: its generator",
    )
    image_size: int = Field(
        128, ge=16, description="the network's input side: the whole image resized to it, or the patch side"
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share drawn into val where no folder says the split")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="share drawn into test where no folder says the split")
    group_pattern: str | None = Field(
        None, description="regex over the file stem; its first group (or match) keeps a group in one split"
    )
    seed: int = 0
    workers: int = Field(0, ge=0)
    synthetic: SyntheticParams = Field(default_factory=SyntheticParams)
    drishti: DrishtiParams = Field(default_factory=DrishtiParams)
    folder: FolderParams = Field(default_factory=FolderParams)

    @model_validator(mode="after")
    def _fractions_and_pattern(self) -> DataParams:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("data.val_fraction + data.test_fraction must leave images for train (sum < 1)")
        if self.group_pattern is not None:
            re.compile(self.group_pattern)
        return self


class ValidateParams(BaseModel):
    """Bounds of the Great Expectations gate over the manifest."""

    model_config = ConfigDict(extra="forbid")

    min_train: int = Field(4, ge=1)
    min_val: int = Field(1, ge=1)
    min_test: int = Field(1, ge=1)
    min_side: int = Field(32, ge=1, description="smallest accepted source width and height")
    fg_min: float = Field(0.0, ge=0, description="each class's foreground fraction must exceed this (empty masks fail)")
    fg_max: float = Field(0.6, le=1)
    max_cup_outside_disc: float = Field(0.01, ge=0, description="fraction of cup pixels allowed outside the disc")


Auto = Literal["auto"]  # the plan decides (unetpp.planning.recipe); a number overrides it
PositiveInt = Annotated[int, Field(ge=1)]
Decay = Annotated[float, Field(ge=0, lt=1)]


class TrainParams(BaseModel):
    """The optimisation recipe: the seed's BCE + Dice, Adam, StepLR; best epoch by validation Dice."""

    model_config = ConfigDict(extra="forbid")

    budget_tflop: float = Field(
        42.5, gt=0, description="training compute (TFLOP) the plan buys: its epochs (then on while val improves)"
    )
    cap_tflop: Auto | Annotated[float, Field(gt=0)] = Field(
        "auto", description="the most training compute (TFLOP) a run still improving on val may take; auto: 4 x budget"
    )
    patience: Auto | PositiveInt = Field(
        "auto", description="validations past the planned epochs without a new best (by min_delta) that stop a run"
    )
    min_delta: float = Field(0.001, ge=0, description="the val mean Dice gain that counts as still improving")
    scale: Auto | Literal["whole"] | Annotated[float, Field(gt=0, le=1)] = Field(
        "auto", description="whole: the image resized to data.image_size; a number: patches of it at source x scale"
    )
    epochs: Auto | PositiveInt = "auto"
    batch_size: Auto | PositiveInt = "auto"
    lr: float = Field(1e-3, gt=0)
    step_size: Auto | PositiveInt = Field("auto", description="StepLR: epochs between decays")
    gamma: float = Field(0.1, gt=0, le=1)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast; fp16 on CUDA only")
    channels_last: bool = True
    head_weights: list[float] | None = None
    bce_weight: float = Field(1.0, ge=0)
    dice_weight: float = Field(1.0, ge=0)
    dice_per_image: bool = Field(True, description="soft Dice per image and class (else over the whole batch)")
    ema_decay: Auto | Decay | None = Field(
        "auto", description="validate and keep a moving average of the weights (per step); null: off"
    )
    augment: bool = True
    learning_guard: bool = Field(True, description="fail `train` when a class did not learn (off: plumbing tests)")
    min_dice: float = Field(
        0.1, ge=0, le=1, description="learning guard: every class's best validation Dice must reach this"
    )
    min_skill: float = Field(
        0.25, ge=0, lt=1, description="learning guard: share of the gap from the best trivial predictor's Dice to 1"
    )


class EvaluateParams(BaseModel):
    """How each pruning level and mode is measured on the validation split."""

    model_config = ConfigDict(extra="forbid")

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="the device that will serve")
    batch_size: int = Field(8, ge=1, description="images per inference batch when scoring (evaluate, the gate)")
    warmup: int = Field(3, ge=0)
    repeats: int = Field(15, ge=1, description="latency: median of this many batch-1 calls (per window)")
    overlays: int = Field(4, ge=0, description="validation images drawn with their predictions")


class SelectParams(BaseModel):
    """Which pruned model ships: the fastest within a Dice tolerance of the best."""

    model_config = ConfigDict(extra="forbid")

    max_dice_drop: float = Field(0.01, ge=0)
    max_latency_ms: float | None = Field(None, gt=0)


class TrackingParams(BaseModel):
    """MLflow: by default SQLite inside the project; MLFLOW_TRACKING_URI overrides."""

    model_config = ConfigDict(extra="forbid")

    experiment: str = "unetpp"
    store: str = Field("mlruns", description="folder of mlflow.db and artifacts, relative to the project")


class PromoteParams(BaseModel):
    """The registry's quality gate: when a challenger may replace the champion."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field("unetpp", min_length=1, description="the one registered model name")
    tolerance: float = Field(
        0.005, ge=0, description="promote when the paired difference's 95% interval has its lower bound >= -tolerance"
    )
    min_dice: float = Field(0.5, ge=0, le=1, description="the floor for a first champion")
    max_latency_ms: float | None = Field(None, gt=0, description="latency budget on the serving device")


class ScheduleParams(BaseModel):
    """Scheduled retraining: the cron of the served Prefect deployment."""

    model_config = ConfigDict(extra="forbid")

    cron: str = "0 3 * * 1"
    timezone: str = "UTC"
    monitor_cron: str = Field("0 * * * *", description="the monitor flow's cron, served beside the retrain one")


class MonitorParams(BaseModel):
    """The monitor flow: the served requests' window against the champion's reference."""

    model_config = ConfigDict(extra="forbid")

    window: int = Field(200, ge=2, description="the most recent requests compared with the reference")
    min_requests: int = Field(30, ge=2, description="fewer requests in the window: no verdict yet")
    export: int = Field(20, ge=1, description="least confident kept images exported to label on drift")


class ServeParams(BaseModel):
    """TorchServe: where archives go, loopback ports, batching, workers and request limits."""

    model_config = ConfigDict(extra="forbid")

    model_store: str = "model-store"
    inference_port: int = Field(8080, ge=1, le=65535)
    management_port: int = Field(8081, ge=1, le=65535)
    metrics_port: int = Field(8082, ge=1, le=65535)
    grpc_inference_port: int = Field(7070, ge=1, le=65535, description="TorchServe's gRPC APIs, also on loopback")
    grpc_management_port: int = Field(7071, ge=1, le=65535)
    batch_size: int = Field(4, ge=1)
    max_batch_delay_ms: int = Field(1, ge=0)
    workers: int = Field(1, ge=1)
    threads: int = Field(2, ge=1, description="torch threads per worker")
    max_bytes: int = Field(20 * 2**20, ge=1)
    max_pixels: int = Field(4096 * 4096, ge=1)
    token_expiration_min: int = Field(1440, ge=1, description="lifetime of TorchServe's API keys")
    keep_images: bool = Field(False, description="the request log keeps each request's image (to label later)")


class Params(BaseModel):
    """The whole params.yaml."""

    model_config = ConfigDict(extra="forbid")

    model: ModelParams = Field(default_factory=ModelParams)
    data: DataParams = Field(default_factory=DataParams)
    validate_: ValidateParams = Field(default_factory=ValidateParams, alias="validate")
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    select: SelectParams = Field(default_factory=SelectParams)
    tracking: TrackingParams = Field(default_factory=TrackingParams)
    promote: PromoteParams = Field(default_factory=PromoteParams)
    schedule: ScheduleParams = Field(default_factory=ScheduleParams)
    monitor: MonitorParams = Field(default_factory=MonitorParams)
    serve: ServeParams = Field(default_factory=ServeParams)

    @model_validator(mode="after")
    def _classes_match_data(self) -> Params:
        names, data = self.model.class_names, self.data
        if data.source in ("synthetic", "drishti") and names != ["disc", "cup"]:
            raise ValueError(f"data.source={data.source!r} provides classes [disc, cup]; model.class_names is {names}")
        if data.source == "folder":
            mode, keys = data.folder.mask_mode, list(data.folder.label_values)
            if (mode == "labels" or (mode == "auto" and keys)) and keys != names:
                raise ValueError(f"data.folder.label_values keys {keys} must equal model.class_names {names}")
            if mode in ("binary", "instance") and len(names) != 1:
                raise ValueError(f"data.folder.mask_mode={mode!r} gives one class; model.class_names is {names}")
        return self

    @model_validator(mode="after")
    def _cap_over_budget(self) -> Params:
        if self.train.cap_tflop != "auto" and self.train.cap_tflop < self.train.budget_tflop:
            raise ValueError(
                f"train.cap_tflop {self.train.cap_tflop} is under train.budget_tflop {self.train.budget_tflop}; "
                "expected the cap at least the planned compute"
            )
        return self

    @model_validator(mode="after")
    def _a_weight_per_head(self) -> Params:
        weights, model = self.train.head_weights, self.model
        heads = 4 if model.arch == "unetpp" and model.deep_supervision else 1
        if weights is not None and len(weights) != heads:
            raise ValueError(
                f"train.head_weights has {len(weights)} weights; model.arch={model.arch!r} has {heads} head(s)"
            )
        return self

    @property
    def fundus(self) -> bool:
        """The optic disc + cup task: the cup must lie inside the disc."""
        return self.model.class_names == ["disc", "cup"]


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; errors name the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"params file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"invalid {path}:\n{err}") from None
