"""Figures for the reports and MLflow: training curves, the pruning Pareto front, overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from unetpp.files import replacing


def save(fig: Any, path: Path) -> None:
    """A figure as PNG, written aside then renamed (`unetpp.files.replacing`), and closed."""
    with replacing(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def training_curve(history: list[dict[str, Any]], names: list[str], path: Path) -> Path:
    """Loss (train, val) and validation Dice per class against epochs."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="BCE + Dice loss", title="loss")
    ax_loss.legend()
    for c in names:
        ax_dice.plot(epochs, [r[f"dice_{c}"] for r in history], label=c)
    ax_dice.set(xlabel="epoch", ylabel="Dice", title="validation Dice", ylim=(0, 1))
    ax_dice.legend()
    fig.tight_layout()
    save(fig, path)
    return path


def pareto(rows: list[dict[str, Any]], path: Path) -> Path:
    """Mean validation Dice against latency, one labelled point per level and mode."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for mode, tta, marker in (
        ("fast", False, "o"),
        ("accurate", False, "s"),
        ("fast", True, "^"),
        ("accurate", True, "D"),
    ):
        pts = [r for r in rows if r["mode"] == mode and bool(r.get("tta_flips")) == tta]
        label = f"{mode} + mirroring" if tta else mode
        if not pts:
            continue
        ax.scatter([r["latency_ms"] for r in pts], [r["dice_mean"] for r in pts], marker=marker, label=label)
        for r in pts:
            ax.annotate(
                f"L{r['level']} {label}",
                (r["latency_ms"], r["dice_mean"]),
                textcoords="offset points",
                xytext=(5, 5),
                fontsize=8,
            )
    ax.set(
        xlabel=f"latency, batch 1 ({rows[0]['device']}), ms",
        ylabel="mean validation Dice",
        title="pruning levels and modes: accuracy against speed",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save(fig, path)
    return path


Case = tuple[str, Any, Any, Any]  # (title, (H, W, C) image as decoded, predicted and true (classes, H, W) masks)


ZOOM_MARGIN = 0.5  # the drawn square: the union of prediction and truth widened by half its extent each side


def overlay_grid(cases: list[Case], names: list[str], path: Path, split: str) -> Path:
    """Images with each predicted class filled in its colour and the ground truth as white contours, each
    zoomed on the square around prediction and truth (a disc a few pixels wide in a drawn photograph shows no
    boundary)."""
    import numpy as np

    from unetpp.runtime.images import display_rgb8
    from unetpp.runtime.readout import colour, describe_colours
    from unetpp.runtime.region import region_box

    fig, axes = plt.subplots(1, max(1, len(cases)), figsize=(4 * max(1, len(cases)), 4), squeeze=False)
    for ax, (title, image, pred, truth) in zip(axes[0], cases, strict=False):
        box = region_box(np.concatenate([pred, truth]), ZOOM_MARGIN)
        if box is not None:
            image, pred, truth = box.crop(image), box.crop(pred, (1, 2)), box.crop(truth, (1, 2))
            title += f" [rows {box.top}-{box.bottom}, cols {box.left}-{box.right}]"
        rgb = display_rgb8(image).astype(np.float32) / 255
        for c, name in enumerate(names):
            rgb[pred[c]] = 0.55 * rgb[pred[c]] + 0.45 * np.array(colour(name, c)) / 255
        ax.imshow(rgb)
        for c in range(len(names)):  # white: visible over every fill colour
            ax.contour(np.asarray(truth[c], float), levels=[0.5], colors="white", linewidths=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"{split}: prediction filled ({describe_colours(names)}), ground truth as white contours")
    fig.tight_layout()
    save(fig, path)
    return path


def overlays(model: Any, cases: list[Any], count: int, path: Path) -> Path:
    """The first `count` validation cases at the source resolution, with the served masks (`overlay_grid`);
    `model` is an `unetpp.runtime.served.ServedModel`."""
    shown = [(c.id, c.image, model.masks(c.image), c.masks) for c in cases[: max(1, count)]]
    return overlay_grid(shown, model.names, path, "validation, as served")
