"""How far to trust one served answer: a confidence per class and an out-of-distribution flag, fitted by the
`select` stage on the training data (`unetpp.evaluation.guard_fit`) and shipped in the checkpoint's meta.

Confidence estimators, each an estimate of the answer's Dice, read from the pass that made the answer
(`unetpp.runtime.forward.Inspection`), on the network's grid:

- `agreement`: the mean pairwise Dice of the held deep-supervision heads' masks (Zenk et al., MedIA 2025:
  ensemble members' pairwise agreement detects failures best). A pruned UNet++ keeps heads 1..L as probes
  (L2: two, L4: four); L1 and the U-Net hold one head and have none;
- `soft_dice`: the soft Dice of the answer's probabilities against its own mask (Borges et al., 2024): any
  single head has it;
- `combined`: their mean where both exist.

The out-of-distribution score reads two blocks of the inspection's features, each a `Reference`: the pooled
bottleneck features (González et al., MICCAI 2021) and the input's descriptors that the grid cannot show
(`unetpp.runtime.descriptors`: shape and noise at the source size). Each block's Mahalanobis distance to the
training split's (mean, shrunk precision) is taken in units of its own threshold, and the score is the larger
of the two: over 1 is flagged. Apart, the two descriptors are not drowned by a hundred network features. An
empty prediction whose probabilities stay near 0 is certain by both estimators: the flag is what speaks for a
blank or foreign frame. A cascade's answer is its second stage's on the region, its features the first stage's
on the whole image (`unetpp.runtime.served`); where the first stage finds no region, every confidence is 0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch

from unetpp.runtime.forward import Inspection
from unetpp.runtime.readout import binarize

ESTIMATORS = ("agreement", "soft_dice", "combined")
EMPTY_PX = 1.0  # a class with under one pixel of probability mass and no mask is an agreed "nothing here"


def mahalanobis(features: torch.Tensor, center: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """(n,): the Mahalanobis distance of each row of (n, F) features to `center` under `precision`."""
    d = features.double() - center
    return torch.sqrt(torch.einsum("nf,fg,ng->n", d, precision, d).clamp_min(0))


def _dice(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per class Dice of two (classes, h, w) masks or maps; 1 where both hold under `EMPTY_PX`."""
    inter, total = (a * b).sum((1, 2)), a.sum((1, 2)) + b.sum((1, 2))
    return torch.where(total < EMPTY_PX, torch.ones_like(total), 2 * inter / total.clamp_min(EMPTY_PX))


def soft_dice(probs: torch.Tensor) -> torch.Tensor:
    """(classes,): the soft Dice of the probabilities against their own thresholded mask."""
    return _dice(probs.float(), binarize(probs).float())


def head_agreement(heads: torch.Tensor) -> torch.Tensor | None:
    """(classes,): the mean pairwise Dice of the heads' masks; None with one head."""
    if heads.shape[0] < 2:
        return None
    masks = binarize(heads).float()
    return torch.stack([_dice(masks[i], masks[j]) for i, j in itertools.combinations(range(len(masks)), 2)]).mean(0)


def confidences(inspection: Inspection) -> dict[str, torch.Tensor]:
    """Every estimator this answer offers, each (classes,); 0 where a cascade's first stage found no region."""
    sd = soft_dice(inspection.probs)
    agree = head_agreement(inspection.heads)
    if inspection.missed:
        sd = torch.zeros_like(sd)
        agree = None if agree is None else torch.zeros_like(agree)
    if agree is None:
        return {"soft_dice": sd}
    return {"agreement": agree, "soft_dice": sd, "combined": (agree + sd) / 2}


@dataclass(frozen=True)
class Reference:
    """One block of the guard's features, `start`:`stop`: the training cases' mean (`center`) and shrunk
    inverse covariance (`precision`), and the distance over which an input is flagged (`threshold`)."""

    start: int
    stop: int
    center: torch.Tensor
    precision: torch.Tensor
    threshold: float

    def ratio(self, features: torch.Tensor) -> float:
        """The block's Mahalanobis distance over its threshold."""
        block = features[self.start : self.stop][None]
        return float(mahalanobis(block, self.center, self.precision)[0]) / self.threshold

    def as_meta(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("start", "stop", "center", "precision", "threshold")}

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Reference:
        return cls(
            int(meta["start"]),
            int(meta["stop"]),
            meta["center"].double(),
            meta["precision"].double(),
            float(meta["threshold"]),
        )


@dataclass(frozen=True)
class Guard:
    """`estimator` the shipped confidence; per class, its `offset` (the median of Dice - confidence on val,
    added: a shift keeps the ranking and removes the estimator's bias) and `low`, the confidence under which
    an answer is flagged (chosen on val); `references`, the feature blocks the out-of-distribution score
    reads."""

    estimator: str
    offset: dict[str, float]
    low: dict[str, float]
    references: tuple[Reference, ...]

    def confidence(self, inspection: Inspection, names: list[str]) -> dict[str, float]:
        """Per class, the shipped estimate of the answer's Dice, in [0, 1] (0 for a region a cascade missed)."""
        if inspection.missed:
            return dict.fromkeys(names, 0.0)
        raw = confidences(inspection)[self.estimator]
        return {c: min(1.0, max(0.0, float(v) + self.offset[c])) for c, v in zip(names, raw, strict=True)}

    def ood_score(self, features: torch.Tensor) -> float:
        """The largest of the blocks' Mahalanobis distances to the training split's, each over its threshold."""
        return max(r.ratio(features.double()) for r in self.references)

    def verdict(self, inspection: Inspection, names: list[str]) -> dict[str, Any]:
        """What an answer carries: per class `confidence` and `low_confidence`, the `out_of_distribution`
        flag and the score behind it (distance / threshold; over 1 is flagged)."""
        conf = self.confidence(inspection, names)
        score = self.ood_score(inspection.features)
        return {
            "confidence": {c: round(v, 4) for c, v in conf.items()},
            "low_confidence": {c: v < self.low[c] for c, v in conf.items()},
            "out_of_distribution": score > 1.0,
            "ood_score": round(score, 3),
        }

    def as_meta(self) -> dict[str, Any]:
        """As a checkpoint holds it (tensors: loadable with weights_only)."""
        return {
            "estimator": self.estimator,
            "offset": dict(self.offset),
            "low": dict(self.low),
            "references": [r.as_meta() for r in self.references],
        }

    @classmethod
    def of(cls, meta: dict[str, Any]) -> Guard | None:
        """A checkpoint's guard; None for checkpoints from before the pipeline fitted one."""
        g = meta.get("guard")
        if not g:
            return None
        if "references" in g:
            references = tuple(map(Reference.of, g["references"]))
        else:  # a champion fitted before the descriptors: one block, the bottleneck features that lead the vector
            center, precision = g["center"].double(), g["precision"].double()
            references = (Reference(0, len(center), center, precision, float(g["ood_threshold"])),)
        return cls(g["estimator"], dict(g["offset"]), dict(g["low"]), references)
