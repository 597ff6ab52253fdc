"""The served model: its config parsed once from a checkpoint (old checkpoints included), loaded by one call,
and its answers equal to the forward pass they come from, at each image's size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tests.conftest import randomize_batchnorm
from unetpp.nn.checkpoint import atomic_save, model_payload
from unetpp.nn.networks import UNetPlusPlus
from unetpp.runtime.forward import forward_images
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import RGB, Intensity
from unetpp.runtime.readout import readout, served_masks
from unetpp.runtime.served import ServedConfig, load_served


def _pruned() -> UNetPlusPlus:
    torch.manual_seed(0)
    return randomize_batchnorm(UNetPlusPlus.from_preset("tiny")).eval().prune(2, "fast", probes=True)


def test_a_checkpoint_from_before_the_plan_reads_as_it_was_served() -> None:
    """No geometry, intensity, mirroring or guard: the whole image at image_size, RGB, no flips, unguarded."""
    config = ServedConfig.parse({"class_names": ["disc", "cup"], "image_size": 64}, _pruned().config)
    assert config.geometry == Geometry("whole", 64) and config.intensity == RGB
    assert config.flips == () and config.guard is None and (config.level, config.mode) == (2, "fast")
    assert config.describe() == {"level": 2, "mode": "fast"}


def test_load_served_answers_as_the_forward_pass_at_each_image_size(tmp_path: Path) -> None:
    pruned, geometry = _pruned(), Geometry("whole", 48)
    meta = {"class_names": ["disc", "cup"], "image_size": 48, "geometry": geometry.as_dict(), "tta_flips": [1]}
    meta["intensity"] = Intensity(3, 3).as_dict()
    atomic_save(model_payload(pruned, "unetpp_pruned", **meta), tmp_path / "model.pt")
    served = load_served(tmp_path / "model.pt")
    assert served.config.flips == (1,) and served.config.describe()["tta_flips"] == [1]
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (70, 90, 3), dtype=np.uint8), rng.integers(0, 255, (50, 40, 3), dtype=np.uint8)]
    seen = forward_images(served.module, images, geometry, RGB, (1,))
    for image, s, answer in zip(images, seen, served.answers(images), strict=True):
        expected = served_masks(s.probs, *image.shape[:2], served.names)
        assert answer.masks.shape == (2, *image.shape[:2]) and (answer.masks == expected).all()
        assert answer.probs.shape == (2, *image.shape[:2])
        assert answer.body == readout(expected, served.names)  # no guard in this checkpoint: no verdict
