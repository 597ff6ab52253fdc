"""What the configured model is: parameters and GFLOPs of every pruning level and mode."""

from __future__ import annotations

from typing import Any

from unetpp.nn.networks import build_model, count_parameters, variants
from unetpp.params import ModelParams
from unetpp.scoring.cost import count_flops


def model_summary(params: ModelParams, input_size: int) -> dict[str, Any]:
    """Parameters and GFLOPs (one image at `input_size`) for the full model and each level x mode; with
    `in_channels: auto`, of an RGB input (the channels only change the first convolution; plans.json counts
    the data's own)."""
    channels = 3 if params.in_channels == "auto" else params.in_channels
    model = build_model(params.arch, **params.build_kwargs(channels)).eval()
    shape = (1, channels, input_size, input_size)
    rows: list[dict[str, Any]] = []
    for level, mode in variants(model):
        module = model.prune(level, mode)
        rows.append(
            dict(
                level=level,
                mode=mode,
                nodes=len(module.nodes),
                heads=list(module.head_ids),
                parameters=count_parameters(module),
                gflops=round(count_flops(module, shape) / 1e9, 3),
            )
        )
    return dict(
        arch=params.arch,
        config=model.config,
        class_names=params.class_names,
        input_size=input_size,
        parameters=count_parameters(model),
        levels=rows,
    )
