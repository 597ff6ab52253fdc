"""The plan stage: fingerprint the prepared data, derive the recipe, write plans.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unetpp.data.prepared import load_manifest, readable
from unetpp.files import write_json
from unetpp.nn.networks import build_model
from unetpp.params import Params
from unetpp.planning import resolution
from unetpp.planning.fingerprint import diameters, fingerprint
from unetpp.planning.recipe import derive, intensity_rule
from unetpp.scoring.cost import count_flops


def plan(params: Params, prepared: Path, out: Path) -> dict[str, Any]:
    """Write `out` (plans.json): the fingerprint, the model's cost and the recipe; returns it."""
    size, model_params = params.data.image_size, params.model
    fp = fingerprint(prepared, model_params.class_names, size)
    manifest = load_manifest(prepared)
    train = readable(manifest, "train")
    side = float(np.median(np.sqrt(train["width"].to_numpy(float) * train["height"].to_numpy(float))))
    masks = resolution.source_masks(prepared, train["id"].astype(str).tolist())
    objects = {c: diameters(train.iloc[: len(masks)], c) for c in model_params.class_names}
    geometry, geometry_entry, region, region_entry = resolution.entry(
        params.train.scale, masks, objects, model_params.class_names, size, side
    )
    reading = intensity_rule(params, fp)
    model = build_model(model_params.arch, **model_params.build_kwargs(reading.in_channels)).eval()
    sides = [size] if region is None else [size, region.size]  # a cascade's step trains both stages
    forward = sum(count_flops(model, (1, reading.in_channels, s, s)) for s in sides)
    described = {"arch": model_params.arch, "input_side": size, "forward_gflops_per_image": round(forward / 1e9, 4)}
    recipe = derive(params, fp, forward, (geometry, geometry_entry), reading)
    if region is not None:  # the second stage shows what the first stage's grid loses (region_entry's spans)
        recipe["geometry"].pop("warning", None)
    result = {
        "fingerprint": fp,
        "model": described | ({} if region is None else {"region_side": region.size}),
        "recipe": recipe | {"region": region_entry},
    }
    write_json(out, result)
    return result
