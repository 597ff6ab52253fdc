"""The served model: its config parsed once from a checkpoint (old checkpoints included), loaded by one call,
and its answers equal to the forward pass they come from, at each image's size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import randomize_batchnorm
from unetpp.nn.checkpoint import atomic_save, model_payload
from unetpp.nn.networks import UNetPlusPlus
from unetpp.runtime.forward import Inspection, forward_images
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.guard import Guard, confidences
from unetpp.runtime.intensity import RGB, Intensity
from unetpp.runtime.readout import readout, served_masks
from unetpp.runtime.region import Box, Region, paste
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


def _cascade(tmp_path: Path, found: bool) -> Path:
    """A cascade's checkpoint: a whole first stage (stored whole, as training writes it) whose heads' biases
    find everything (`found`) or nothing, and a pruned second stage on a 32-px region grid."""
    torch.manual_seed(1)
    first = randomize_batchnorm(UNetPlusPlus.from_preset("tiny")).eval()
    for name, p in first.named_parameters():
        if name.startswith("heads.") and name.endswith("bias"):
            p.data.fill_(10.0 if found else -10.0)
    rgb = {"intensity": Intensity(3, 3).as_dict(), "class_names": ["disc", "cup"]}
    coarse = model_payload(first, "unetpp", image_size=48, geometry=Geometry("whole", 48).as_dict(), **rgb)
    region = Region(32, 0.25, 0.1, 0.15)
    meta = {"image_size": 32, "geometry": Geometry("whole", 32).as_dict(), **rgb}
    meta["cascade"] = {"coarse": coarse, "region": region.as_dict()}
    atomic_save(model_payload(_pruned(), "unetpp_pruned", **meta), tmp_path / "model.pt")
    return tmp_path / "model.pt"


def test_a_cascade_segments_the_region_its_first_stage_finds_and_pastes_it_back_at_the_source_size(
    tmp_path: Path,
) -> None:
    served = load_served(_cascade(tmp_path, found=True))
    assert [s.config.geometry.size for s in served.stages] == [48, 32]
    cascade = {"whole_side": 48, "whole_level": 4, "region_side": 32}
    assert served.describe() == {"level": 2, "mode": "fast", "cascade": cascade}
    assert (served.coarse.config.level, served.coarse.config.mode) == (4, "fast")  # the first stage at full depth
    image = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    answer = next(served.answers([image]))
    box = answer.seen.region
    assert box == Box(0, 0, 60, 90) and not answer.seen.missed  # found everywhere: the whole image, cut by it
    crop = forward_images(served.module, [box.crop(image)], Geometry("whole", 32), RGB)[0]
    assert torch.equal(answer.seen.probs, crop.probs)
    expected = served_masks(paste(crop.probs, box, 60, 90), 60, 90, served.names)
    assert answer.masks.shape == (2, 60, 90) and (answer.masks == expected).all()


def test_a_region_off_the_centre_is_cut_where_the_first_stage_found_it_and_pasted_back_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first stage's pass replaced by one that finds a part at rows 30-39, columns 40-47 of its 48-px grid
    of a 96 x 144 image: the region is that part's extent in source pixels (rows 60-80, columns 120-144: side
    24) widened by the margin to 36 and moved inside the image, the second stage segments that crop, and its
    answer lies there and nowhere else."""
    served = load_served(_cascade(tmp_path, found=True))
    image = np.random.default_rng(0).integers(0, 255, (96, 144, 3), dtype=np.uint8)
    probs = torch.zeros((2, 48, 48))
    probs[0, 30:40, 40:48] = 0.9
    found = Inspection(probs, probs[None], torch.zeros(4))
    monkeypatch.setattr(served.coarse, "inspect", lambda images: [found for _ in images])
    answer = next(served.answers([image]))
    assert answer.seen.region == Box(52, 108, 88, 144)
    crop = forward_images(served.module, [answer.seen.region.crop(image)], Geometry("whole", 32), RGB)[0]
    assert torch.equal(answer.seen.probs, crop.probs)
    expected = served_masks(paste(crop.probs, answer.seen.region, 96, 144), 96, 144, served.names)
    assert (answer.masks == expected).all() and not answer.masks[:, :52].any() and not answer.masks[:, :, :108].any()


def test_a_region_the_first_stage_misses_is_an_empty_answer_with_confidence_zero(tmp_path: Path) -> None:
    served = load_served(_cascade(tmp_path, found=False))
    image = np.random.default_rng(0).integers(0, 255, (60, 90, 3), dtype=np.uint8)
    answer = next(served.answers([image]))
    assert answer.seen.missed and answer.seen.region is None and not answer.masks.any()
    assert all(float(v.max()) == 0.0 for v in confidences(answer.seen).values())
    guard = Guard("soft_dice", {"disc": 0.2, "cup": 0.2}, {"disc": 0.5, "cup": 0.5}, ())
    assert guard.confidence(answer.seen, served.names) == {"disc": 0.0, "cup": 0.0}
