"""The learning guard: a model no better than a trivial predictor is an error, not a result.

After training, each class's best validation Dice (the kept model's, epoch by epoch) is compared
with what predictors that look at no image score on the same masks: the empty mask, the
all-foreground mask, and the training masks' prior (the per-pixel share of training images in which
the pixel is foreground, thresholded where it scores best on the training split): a model that only
learned where structures usually are scores about as well as that prior. A class must close at
least `train.min_skill` of the gap between the best of them and a perfect Dice — a skill score,
(Dice - trivial) / (1 - trivial), as forecasts are verified against climatology: on a few
validation images a fixed margin is within noise — and reach `train.min_dice`; otherwise it fails the stage with
`DidNotLearn` (exit 3: a bad result, not bad input, and not retried), so nothing downstream
evaluates, selects or registers it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unetpp.data.dataset import PreparedDataset
from unetpp.errors import DidNotLearn
from unetpp.params import Params
from unetpp.planning.recipe import Recipe


def _masks(dataset: PreparedDataset) -> np.ndarray:
    """(images, classes, H, W) bool: the split's stored masks."""
    stacked = []
    for path in dataset.paths:
        with np.load(path) as npz:
            stacked.append(npz["mask"].astype(bool))
    return np.stack(stacked)


def _dice(pred: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image Dice of one (H, W) prediction against (images, H, W) masks; 1 when both are empty."""
    inter = (masks & pred).reshape(len(masks), -1).sum(1)
    total = masks.reshape(len(masks), -1).sum(1) + pred.sum()
    return np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))


PRIOR_LEVELS = np.linspace(0.05, 0.95, 19)


def trivial_dice(train: PreparedDataset, val: PreparedDataset, names: list[str]) -> dict[str, dict[str, float]]:
    """Per class, the mean validation Dice of the empty, the all-foreground and the training-prior mask."""
    train_masks, val_masks = _masks(train), _masks(val)
    out = {}
    for k, c in enumerate(names):
        prior = train_masks[:, k].mean(0)
        level = max(PRIOR_LEVELS, key=lambda t: _dice(prior >= t, train_masks[:, k]).mean())
        masks = val_masks[:, k]
        out[c] = {
            "empty": float(_dice(np.zeros_like(prior, bool), masks).mean()),
            "all_foreground": float(_dice(np.ones_like(prior, bool), masks).mean()),
            "training_prior": float(_dice(prior >= level, masks).mean()),
        }
    return out


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
    if trivial["training_prior"] > 0.5 * max(trivial.values()) and trivial["training_prior"] > 0.1:
        causes.append("the model scores about what the training masks' prior does: it learned where, not what")
    if max(trivial["empty"], trivial["all_foreground"]) > 0.5:
        causes.append("a trivial mask already scores high: the class fills most of the image, or is mostly absent")
    causes.append("the masks may not match the images (check data.path and the mask files' names)")
    return causes


def check_learning(
    history: list[dict[str, Any]], params: Params, recipe: Recipe, train: PreparedDataset, val: PreparedDataset
) -> None:
    """Raise `DidNotLearn` naming each class that did not learn, its best Dice and epoch, and likely causes."""
    names = params.model.class_names
    trivial, n_train = trivial_dice(train, val, names), len(train)
    failed = []
    for c in names:
        best = max(history, key=lambda r: r[f"dice_{c}"])
        base = max(trivial[c].values())
        dice, bar = best[f"dice_{c}"], max(base + params.train.min_skill * (1 - base), params.train.min_dice)
        if dice < bar:
            pixels = _mean_foreground_pixels(val, names.index(c))
            causes = "; ".join(likely_causes(params, recipe, n_train, trivial[c], pixels))
            failed.append(
                f"class {c!r}: best validation Dice {dice:.4f} at epoch {best['epoch']}/{len(history)}, under "
                f"{bar:.4f} (trivial predictors: empty {trivial[c]['empty']:.4f}, all-foreground "
                f"{trivial[c]['all_foreground']:.4f}, training prior {trivial[c]['training_prior']:.4f}, "
                f"best {base:.4f} + train.min_skill {params.train.min_skill} of the gap to 1; "
                f"train.min_dice {params.train.min_dice}). "
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
