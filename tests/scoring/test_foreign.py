"""Foreign inputs keep what a request would carry: the source's shape, dtype and channels."""

from __future__ import annotations

import numpy as np

from unetpp.scoring.foreign import KINDS, foreign


def test_foreign_inputs_keep_the_source_shape_and_dtype() -> None:
    image = np.random.default_rng(0).integers(30000, 36000, (40, 30, 2), dtype=np.uint16)
    for kind in KINDS:
        made = foreign(image, kind, seed=1)
        assert made.dtype == image.dtype and made.shape[2] == 2, kind
        assert not np.array_equal(made, image), kind
    assert foreign(image, "rotated").shape[:2] == (30, 40)
