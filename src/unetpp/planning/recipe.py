"""The training recipe derived from the fingerprint: each value with the rule that produced it.

Every value may be set in params.yaml (a number wins over the plan, and the plan says so) or left
`auto`. Training length is counted in optimizer steps bought by one compute budget
(`train.budget_tflop`), so a 10-image set trains as long as a 1,000-image one; epochs follow. Past
them a run goes on while val still improves, up to the steps `train.cap_tflop` buys
(`unetpp.training.stopping`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetpp.errors import UserError
from unetpp.params import Params, TrainParams
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.region import Region

MAX_BATCH = 8  # images per step at most (the CPU profile's batch; smaller sets use all their images)
TRAIN_FLOPS_PER_FORWARD = 3  # a training step costs ~3 forwards (forward + backward), per image
LR_DECAY_AT = 0.65  # StepLR: x gamma once, after this share of the epochs (26 of 40 on the CPU profile)
EMA_MAX_HORIZON = 50  # steps the weight average spans at most ...
EMA_RUN_SHARE = 10  # ... and at most a tenth of the run, so the initial weights fade (e^-10) by its end
EMA_MIN_HORIZON = 10  # below this the average would span nothing useful: off
TRANSLATE_SHARE = 10  # augmentation shifts up to a tenth of the side
MIN_OBJECT_PX = 8  # objects narrower than this on the trained grid are flagged
MAX_VALIDATIONS = 50  # validate every ceil(epochs / this) epochs: sliding windows over large images cost
CAP_TIMES_BUDGET = 4  # a run still improving may take up to 4x its planned compute (train.cap_tflop: auto)
PATIENCE_SHARE, MIN_PATIENCE = 10, 3  # patience: a tenth of the planned validations, at least 3
OUTLIER_TAIL = 1.0  # clip each image at CLIP_PERCENTILES when its extremes lie further out than its own span
CLIP_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Recipe:
    """The resolved values `train` uses."""

    batch_size: int
    epochs: int  # planned
    steps: int
    cap_epochs: int  # the most a run still improving may take
    patience: int  # validations
    step_size: int
    ema_decay: float | None
    flip_axes: tuple[int, ...]
    translate_px: int
    geometry: Geometry
    intensity: Intensity
    val_every: int
    region: Region | None = None  # a cascade's second stage (`geometry` is then its first's)


def _entry(value: Any, rule: str, overridden: bool) -> dict[str, Any]:
    return {"value": value, "from": "params" if overridden else "plan", "rule": rule}


def intensity_rule(params: Params, fp: dict[str, Any]) -> Intensity:
    """How the network reads the images: their one channel count (the data gate refuses a mix), reduced to 1
    by luma only where `model.in_channels: 1` asks it of RGB; clipped where a channel's `outlier_tail` is
    over `OUTLIER_TAIL` (`unetpp.runtime.intensity` says why)."""
    if len(fp["channels"]) != 1:
        raise UserError(f"the training and validation images have {fp['channels']} channels; expected one count")
    channels = fp["channels"][0]
    wanted = channels if params.model.in_channels == "auto" else params.model.in_channels
    outliers = any(c["outlier_tail"] > OUTLIER_TAIL for c in fp["intensity"])
    return Intensity(channels, wanted, CLIP_PERCENTILES if outliers else None)


def derive(
    params: Params,
    fp: dict[str, Any],
    forward_flops: int,
    geometry: tuple[Geometry, dict[str, Any]],
    intensity: Intensity,
) -> dict[str, dict[str, Any]]:
    """The recipe as {name: {value, from, rule}}; `forward_flops` is one forward at image_size (a whole image
    or a patch: a step costs the same either way; a cascade's, both stages' summed: each trains the steps bought),
    `geometry` the resolution rule's choice and entry,
    `intensity` the channels' rule (`intensity_rule`)."""
    n_train = fp["images"]["train"]
    if n_train < 1:
        raise UserError("the plan needs at least one training image; the manifest has none")
    out = _schedule(params.train, n_train, forward_flops)
    out |= _reading(params, fp, intensity)
    out["geometry"] = _checked(fp, *geometry)
    return out


def _schedule(tp: TrainParams, n_train: int, forward_flops: int) -> dict[str, dict[str, Any]]:
    """How long and how fast: the batch, epochs and steps the budget buys, the cap past them, patience,
    learning-rate decay, weight averaging and how often to validate."""
    out: dict[str, dict[str, Any]] = {}
    batch = min(MAX_BATCH, n_train) if tp.batch_size == "auto" else tp.batch_size
    out["batch_size"] = _entry(batch, f"min({MAX_BATCH}, training images = {n_train})", tp.batch_size != "auto")
    per_epoch = math.ceil(n_train / batch)
    step_cost = TRAIN_FLOPS_PER_FORWARD * forward_flops * batch
    bought = max(1, int(tp.budget_tflop * 1e12 // step_cost))
    epochs = math.ceil(bought / per_epoch) if tp.epochs == "auto" else tp.epochs
    out["epochs"] = _entry(
        epochs,
        f"ceil(steps bought / steps per epoch): train.budget_tflop {tp.budget_tflop} / ({TRAIN_FLOPS_PER_FORWARD} x "
        f"{forward_flops / 1e9:.3f} GFLOP per image x batch {batch}) = {bought} steps; {per_epoch} steps per epoch",
        tp.epochs != "auto",
    )
    steps = epochs * per_epoch
    out["steps"] = _entry(steps, f"epochs x ceil({n_train} / {batch})", False)
    cap_tflop = CAP_TIMES_BUDGET * tp.budget_tflop if tp.cap_tflop == "auto" else tp.cap_tflop
    capped = max(bought, int(cap_tflop * 1e12 // step_cost))
    cap = max(epochs, math.ceil(capped / per_epoch)) if tp.epochs == "auto" else epochs
    out["cap_epochs"] = _entry(
        cap,
        f"past the planned epochs while val improves, up to train.cap_tflop {cap_tflop:g}"
        + (f" ({CAP_TIMES_BUDGET} x train.budget_tflop)" if tp.cap_tflop == "auto" else "")
        + f": {capped} steps"
        if tp.epochs == "auto"
        else "train.epochs is set: exactly those",
        tp.epochs != "auto" or tp.cap_tflop != "auto",
    )
    val_every = math.ceil(epochs / MAX_VALIDATIONS)
    validations = math.ceil(epochs / val_every)
    patience = max(MIN_PATIENCE, math.ceil(validations / PATIENCE_SHARE)) if tp.patience == "auto" else tp.patience
    out["patience"] = _entry(
        patience,
        f"a run past its planned epochs stops at the first validation whose last `patience` beat the best before "
        f"them by under train.min_delta {tp.min_delta}: max({MIN_PATIENCE}, {validations} planned validations / "
        f"{PATIENCE_SHARE})",
        tp.patience != "auto",
    )
    step_size = max(1, round(LR_DECAY_AT * epochs)) if tp.step_size == "auto" else tp.step_size
    out["step_size"] = _entry(
        step_size,
        f"StepLR: learning rate x {tp.gamma} every step_size epochs, the first after {LR_DECAY_AT:.0%} of the planned",
        tp.step_size != "auto",
    )
    horizon = min(EMA_MAX_HORIZON, steps // EMA_RUN_SHARE)
    if tp.ema_decay == "auto":
        decay = None if horizon < EMA_MIN_HORIZON else round(1 - 1 / horizon, 6)
        rule = (
            f"horizon min({EMA_MAX_HORIZON}, steps {steps} / {EMA_RUN_SHARE}) = {horizon} steps; decay 1 - 1/horizon"
            + (f"; off below {EMA_MIN_HORIZON} steps" if decay is None else "")
        )
    else:
        decay, rule = tp.ema_decay, "set in params.yaml"
    out["ema_decay"] = _entry(decay, rule, tp.ema_decay != "auto")
    out["val_every"] = _entry(val_every, f"ceil(epochs {epochs} / {MAX_VALIDATIONS}), and after the last epoch", False)
    return out


def _reading(params: Params, fp: dict[str, Any], intensity: Intensity) -> dict[str, dict[str, Any]]:
    """What each training image becomes: its flips and shifts, its channels and its intensity reading."""
    size = params.data.image_size
    out: dict[str, dict[str, Any]] = {}
    flips = (1,) if params.fundus else (0, 1)
    out["flip_axes"] = _entry(
        list(flips),
        "horizontal only for fundus photographs (left and right eyes mirror; up and down do not), else both",
        False,
    )
    out["translate_px"] = _entry(size // TRANSLATE_SHARE, f"data.image_size {size} / {TRANSLATE_SHARE}", False)
    out["in_channels"] = _entry(
        intensity.in_channels,
        f"the training images' channel count {fp['channels']}"
        + (" reduced to 1 by luma" if intensity.in_channels != intensity.channels else ""),
        params.model.in_channels != "auto",
    )
    out["intensity"] = _entry(
        intensity.as_dict(),
        "per image and channel: zero mean, unit variance, in float32 from the source's values (no bit depth scaled)"
        + (
            f"; clipped at the image's own {CLIP_PERCENTILES} percentiles first: a channel's outlier_tail "
            if intensity.clip
            else "; not clipped: every channel's outlier_tail "
        )
        + f"{[c['outlier_tail'] for c in fp['intensity']]} is {'over' if intensity.clip else 'at most'} {OUTLIER_TAIL}",
        False,
    )
    return out


def _checked(fp: dict[str, Any], geometry: Geometry, entry: dict[str, Any]) -> dict[str, Any]:
    """The geometry entry with the objects' 5th-percentile diameter on its grid, and a warning when that
    keeps fewer than `MIN_OBJECT_PX`."""
    trained = {
        c: v["diameter_trained_px"]["p5"]
        if geometry.mode == "whole"
        else v["diameter_source_px"]["p5"] * geometry.scale
        for c, v in fp["classes"].items()
    }
    entry["diameter_p5_on_grid_px"] = {c: round(d, 2) for c, d in trained.items()}
    small = {c: d for c, d in trained.items() if d < MIN_OBJECT_PX}
    if small:
        entry["warning"] = f"smallest objects under {MIN_OBJECT_PX} px across on the trained grid: " + ", ".join(
            f"{c} {d:.1f} px" for c, d in small.items()
        )
    return entry


def recipe_of(plan: dict[str, Any]) -> Recipe:
    """The resolved values of a plan (as `plans.json` holds it)."""
    r = plan["recipe"]
    return Recipe(
        batch_size=int(r["batch_size"]["value"]),
        epochs=int(r["epochs"]["value"]),
        steps=int(r["steps"]["value"]),
        cap_epochs=int(r["cap_epochs"]["value"]),
        patience=int(r["patience"]["value"]),
        step_size=int(r["step_size"]["value"]),
        ema_decay=r["ema_decay"]["value"],
        flip_axes=tuple(r["flip_axes"]["value"]),
        translate_px=int(r["translate_px"]["value"]),
        geometry=Geometry.of({"geometry": r["geometry"]["value"]}),
        intensity=Intensity.of({"intensity": r["intensity"]["value"]}, int(r["in_channels"]["value"])),
        val_every=int(r["val_every"]["value"]),
        region=Region.of(r.get("region", {}).get("value")),
    )


def load_recipe(path: Path) -> Recipe:
    """The resolved recipe in `plans.json` at `path`."""
    if not path.is_file():
        raise UserError(f"{path}: no plan; run `unetpp plan` (or `dvc repro plan`) first")
    return recipe_of(json.loads(path.read_text()))
