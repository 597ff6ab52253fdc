"""The input's descriptors: what the network's grid cannot show, read at the image's own size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from unetpp.data.synthetic import generate_fundus
from unetpp.runtime.descriptors import blocks, input_descriptors


def test_the_aspect_is_read_and_noise_raises_the_noise_ratio_whatever_the_bit_depth() -> None:
    image = generate_fundus(0, 256, seed=0).image
    wide = image[:128]
    assert float(input_descriptors(wide)[0]) == pytest.approx(math.log(128 / 256))
    assert float(input_descriptors(np.ascontiguousarray(np.rot90(wide)))[0]) == pytest.approx(math.log(2))
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 2 * image.std(), image.shape), 0, 255).astype(np.uint8)
    assert float(input_descriptors(noisy)[1]) > float(input_descriptors(image)[1]) + 1.0
    deep = image.astype(np.uint16) * 257  # the same image at 16 bits
    assert input_descriptors(deep).numpy() == pytest.approx(input_descriptors(image).numpy(), abs=1e-6)


def test_the_descriptors_are_the_last_block_of_the_guard_vector() -> None:
    layout = blocks(130)
    assert layout["network"][0] == slice(0, 128) and layout["input"][0] == slice(128, 130)
