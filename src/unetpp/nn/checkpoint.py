"""Checkpoints: written atomically, read with `weights_only=True`, rebuilt from their own config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unetpp.errors import UserError
from unetpp.files import replacing
from unetpp.nn.networks import NodeNet, build_model


def atomic_save(obj: dict[str, Any], path: Path) -> None:
    """Save beside, then rename: a kill mid-write never leaves a torn checkpoint."""
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def model_payload(model: NodeNet, arch: str, **meta: Any) -> dict[str, Any]:
    """What any later stage needs to rebuild the model: arch, constructor config, weights, metadata."""
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items()}
    return {"arch": arch, "config": config, "state_dict": model.state_dict(), **meta}


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> tuple[NodeNet, dict[str, Any]]:
    """The model in eval mode and the checkpoint's other entries."""
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint; run `unetpp train` (or `dvc repro train`) first")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    return model_of(ckpt), {k: v for k, v in ckpt.items() if k != "state_dict"}


def model_of(payload: dict[str, Any]) -> NodeNet:
    """The eval-mode model a `model_payload` holds (a checkpoint, or a cascade's first stage inside one)."""
    model = build_model(payload["arch"], **payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval()
