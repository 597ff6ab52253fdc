"""`forward_images`: the served answer and what the guard reads come from the same passes, on either grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import randomize_batchnorm
from unetpp.nn.networks import UNetPlusPlus
from unetpp.runtime.descriptors import DESCRIPTORS
from unetpp.runtime.forward import forward_images, segment
from unetpp.runtime.geometry import Geometry, network_input
from unetpp.runtime.inference import optimize_for_inference
from unetpp.runtime.intensity import RGB


@pytest.fixture(scope="module")
def served() -> torch.nn.Module:
    torch.manual_seed(0)
    model = randomize_batchnorm(UNetPlusPlus.from_preset("tiny")).eval()
    return optimize_for_inference(model.prune(3, "fast", probes=True))


@pytest.mark.parametrize(
    "geometry, flips", [(Geometry("whole", 48), ()), (Geometry("whole", 48), (1,)), (Geometry("patch", 32, 0.5), (0,))]
)
def test_the_answer_is_the_segmented_probabilities(served: torch.nn.Module, geometry: Geometry, flips: tuple) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (90, 70, 3), dtype=np.uint8) for _ in range(2)]
    seen = forward_images(served, images, geometry, RGB, flips)
    for image, s in zip(images, seen, strict=True):
        expected = segment(served, network_input(image, geometry, RGB)[None], geometry, flips=flips)[0]
        torch.testing.assert_close(s.probs, expected, atol=1e-5, rtol=1e-4)
        assert s.heads.shape == (3, *expected.shape)  # heads 1..3: the probes and the answer's
        torch.testing.assert_close(s.heads[-1], s.probs)  # fast: the answer is the last head
        assert s.features.shape == (2 * served.config["widths"][3] + len(DESCRIPTORS),)  # pooled, then descriptors
    assert not torch.allclose(seen[0].features, seen[1].features)  # each image its own, not the batch's
