"""The learning guard: a model no better than a trivial predictor is an error, not a result.

After training, each class's best validation Dice (the kept model's, epoch by epoch) is compared
with what a predictor that looks at no image scores on the same masks: the empty mask (Dice 1 on
an image whose mask is empty, 0 elsewhere) and the all-foreground mask (2|G| / (|G| + N) per
image). A class whose best Dice does not beat both by `MARGIN`, or stays under `train.min_dice`,
fails the stage with `DidNotLearn` (exit 3: a bad result, not bad input, and not retried), so
nothing downstream evaluates, selects or registers it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unetpp.data.dataset import PreparedDataset
from unetpp.errors import DidNotLearn
from unetpp.params import Params
from unetpp.planning.recipe import Recipe

MARGIN = 0.02  # a learned class must beat the better trivial predictor by this much Dice


def trivial_dice(dataset: PreparedDataset, names: list[str]) -> dict[str, dict[str, float]]:
    """Per class, the mean Dice over `dataset` of the empty and of the all-foreground prediction."""
    empty, full = np.zeros(len(names)), np.zeros(len(names))
    for path in dataset.paths:
        with np.load(path) as npz:
            masks = npz["mask"].astype(bool)
        area = masks.reshape(len(names), -1).sum(1)
        empty += area == 0
        full += 2 * area / (area + masks[0].size)
    n = len(dataset.paths)
    return {
        c: {"empty": float(e / n), "all_foreground": float(f / n)} for c, e, f in zip(names, empty, full, strict=True)
    }


def likely_causes(
    params: Params, recipe: Recipe, n_train: int, trivial: dict[str, float], fg_pixels: float
) -> list[str]:
    """What the recipe (plans.json) and the data say could have gone wrong, most likely first."""
    size, steps, decay = params.data.image_size, recipe.steps, recipe.ema_decay
    causes = []
    if decay is not None and 1 / (1 - decay) > steps / 5:
        causes.append(
            f"the weight average (ema_decay {decay}, a horizon of ~{1 / (1 - decay):.0f} steps) is long for a "
            f"run of {steps} optimizer steps: what was validated is mostly the initial weights"
        )
    if steps < 300:
        causes.append(
            f"only {steps} optimizer steps ({recipe.epochs} epochs of {n_train} training images; "
            "train.budget_tflop buys more)"
        )
    if fg_pixels < 64:
        causes.append(
            f"the class covers only ~{fg_pixels:.0f} px per image at {size} px (data.image_size): "
            "its objects may be too small at this resolution"
        )
    if max(trivial.values()) > 0.5:
        causes.append("a trivial mask already scores high: the class fills most of the image, or is mostly absent")
    causes.append("the masks may not match the images (check data.path and the mask files' names)")
    return causes


def check_learning(
    history: list[dict[str, Any]], params: Params, recipe: Recipe, val: PreparedDataset, n_train: int
) -> None:
    """Raise `DidNotLearn` naming each class that did not learn, its best Dice and epoch, and likely causes."""
    names = params.model.class_names
    trivial = trivial_dice(val, names)
    failed = []
    for c in names:
        best = max(history, key=lambda r: r[f"dice_{c}"])
        dice, bar = best[f"dice_{c}"], max(max(trivial[c].values()) + MARGIN, params.train.min_dice)
        if dice < bar:
            pixels = _mean_foreground_pixels(val, names.index(c))
            causes = "; ".join(likely_causes(params, recipe, n_train, trivial[c], pixels))
            failed.append(
                f"class {c!r}: best validation Dice {dice:.4f} at epoch {best['epoch']}/{len(history)}, under "
                f"{bar:.4f} (trivial predictors: empty {trivial[c]['empty']:.4f}, all-foreground "
                f"{trivial[c]['all_foreground']:.4f}, + {MARGIN}; train.min_dice {params.train.min_dice}). "
                f"Likely causes: {causes}"
            )
    if failed:
        raise DidNotLearn("the model did not learn: " + " | ".join(failed))


def _mean_foreground_pixels(dataset: PreparedDataset, index: int) -> float:
    total = 0.0
    for path in dataset.paths:
        with np.load(path) as npz:
            total += float(npz["mask"][index].sum())
    return total / len(dataset.paths)
