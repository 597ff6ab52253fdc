"""The learning guard: a model no better than a trivial predictor is an error, not a result.

After training, each class's validation Dice at the kept epoch (the one `best.pt` holds: the best mean
Dice, the model that is evaluated, selected and served — not each class's best epoch) is compared
with what predictors that look at no image score on the same masks: the empty mask, the
all-foreground mask, and the training masks' prior (the per-pixel share of training images in which
the pixel is foreground, thresholded where it scores best on the training split): a model that only
learned where structures usually are scores about as well as that prior. A class must close at
least `train.min_skill` of the gap between the best of them and a perfect Dice — a skill score,
(Dice - trivial) / (1 - trivial), as forecasts are verified against climatology: on a few
validation images a fixed margin is within noise — and reach `train.min_dice`; otherwise it fails the stage with
`DidNotLearn` (exit 3: a bad result, not bad input, and not retried), so nothing downstream
evaluates, selects or registers it.

A run stopped by its cap while val still improved (`unetpp.training.stopping.Ending.still_learning`) is
not refused for a class that already beats every trivial predictor: it is still learning, not failing to,
and the stage passes with a warning that gives the figures and the cap to raise. A class at or under the
prior is refused however its curve runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice

from unetpp.data.dataset import PreparedDataset
from unetpp.errors import DidNotLearn
from unetpp.params import Params
from unetpp.planning.recipe import Recipe
from unetpp.runtime.preprocess import resize_masks
from unetpp.training.stopping import Ending


def grid_masks(dataset: PreparedDataset) -> list[np.ndarray]:
    """(classes, h, w) bool per image: the split's masks on the dataset's grid."""
    return [dataset.arrays(i)[1].astype(bool) for i in range(len(dataset))]


def stacked_masks(dataset: PreparedDataset) -> np.ndarray:
    """(images, classes, H, W) bool: `grid_masks` of a dataset whose grid has one side for every image (the
    whole image at data.image_size), as the prior's per-pixel share needs."""
    return np.stack(grid_masks(dataset))


def _mean_dice(pred: np.ndarray, masks: Sequence[np.ndarray]) -> float:
    """Mean Dice of one (H, W) prediction, resampled to each mask's grid, against (h, w) masks, scored like
    the metrics (MONAI `compute_dice`, an empty mask and an empty prediction agree)."""
    scores = []
    for mask in masks:
        guess = resize_masks(pred[None], mask.shape)[0] if pred.shape != mask.shape else pred
        target = torch.from_numpy(np.ascontiguousarray(mask))[None, None].float()
        scores.append(compute_dice(torch.from_numpy(guess)[None, None].float(), target, ignore_empty=False))
    return float(torch.cat(scores).mean())


PRIOR_LEVELS = np.linspace(0.05, 0.95, 19)


def trivial_dice(train: np.ndarray, val: Sequence[np.ndarray], names: list[str]) -> dict[str, dict[str, float]]:
    """Per class, the mean validation Dice of the empty, the all-foreground and the training-prior mask:
    the prior from the training masks at one side (`stacked_masks`), scored on the validation masks of any
    grid (`grid_masks`: the prior is resampled to each)."""
    out = {}
    for k, c in enumerate(names):
        prior = train[:, k].mean(0)
        level = max(PRIOR_LEVELS, key=lambda t: _mean_dice(prior >= t, train[:, k]))
        masks = [v[k] for v in val]
        out[c] = {
            "empty": _mean_dice(np.zeros_like(prior, bool), masks),
            "all_foreground": _mean_dice(np.ones_like(prior, bool), masks),
            "training_prior": _mean_dice(prior >= level, masks),
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
    if fg_pixels < 64 and recipe.geometry.mode == "whole":
        causes.append(
            f"the class covers only ~{fg_pixels:.0f} px per image at {size} px (data.image_size): "
            "its objects may be too small at this resolution"
        )
    if trivial["training_prior"] == max(trivial.values()) and trivial["training_prior"] > 0.1:
        causes.append("the model scores about what the training masks' prior does: it learned where, not what")
    if max(trivial["empty"], trivial["all_foreground"]) > 0.5:
        causes.append("a trivial mask already scores high: the class fills most of the image, or is mostly absent")
    causes.append("the masks may not match the images (check data.path and the mask files' names)")
    return causes


def kept_epoch(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The validated epoch `best.pt` holds: the first with the highest mean Dice (training keeps a later
    one only when it is strictly better)."""
    return max(history, key=lambda r: r["dice_mean"])


def check_learning(
    history: list[dict[str, Any]],
    params: Params,
    recipe: Recipe,
    end: Ending,
    train: PreparedDataset,
    val: PreparedDataset,
) -> str | None:
    """Raise `DidNotLearn` naming each class that did not learn at the kept epoch, its Dice, and likely causes;
    the warning of a run still learning at its cap (every class under the bar beats the trivial predictors),
    else None."""
    names = params.model.class_names
    val_masks = grid_masks(val)
    trivial, n_train = trivial_dice(stacked_masks(train), val_masks, names), len(train)
    best = kept_epoch(history)
    failed, learning = [], []
    for c in names:
        base = max(trivial[c].values())
        dice, bar = best[f"dice_{c}"], max(base + params.train.min_skill * (1 - base), params.train.min_dice)
        if dice < bar and end.still_learning and dice > base:
            learning.append(f"class {c!r} validation Dice {dice:.4f}, under the guard's {bar:.4f} but over the best "
                            f"trivial predictor's {base:.4f}")  # fmt: skip
        elif dice < bar:
            pixels = float(np.mean([v[names.index(c)].sum() for v in val_masks]))
            causes = "; ".join(likely_causes(params, recipe, n_train, trivial[c], pixels))
            failed.append(
                f"class {c!r}: validation Dice {dice:.4f} at the kept epoch {best['epoch']}/{end.epochs}, under "
                f"{bar:.4f} (trivial predictors: empty {trivial[c]['empty']:.4f}, all-foreground "
                f"{trivial[c]['all_foreground']:.4f}, training prior {trivial[c]['training_prior']:.4f}, "
                f"best {base:.4f} + train.min_skill {params.train.min_skill} of the gap to 1; "
                f"train.min_dice {params.train.min_dice}). "
                f"Likely causes: {causes}"
            )
    if failed:
        raise DidNotLearn("the model did not learn: " + " | ".join(failed))
    if learning:
        return (
            f"still learning at the cap: {'; '.join(learning)}; its val mean Dice rose by {end.gain:+.4f} over the "
            f"last {end.patience} validations, at {end.epochs} epochs (planned {end.planned}, the cap {end.cap}: "
            f"train.cap_tflop {params.train.cap_tflop}). Not refused; raise train.cap_tflop to train it further"
        )
    return None
