"""Every pruned level exports to ONNX, with outputs equal to eager at any batch and size."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from tests.conftest import randomize_batchnorm
from unetpp.nn.export import save_onnx
from unetpp.nn.networks import LEVELS, UNetPlusPlus


@pytest.fixture(scope="module")
def model() -> UNetPlusPlus:
    return randomize_batchnorm(UNetPlusPlus.from_preset("tiny")).eval()


@pytest.mark.slow
@pytest.mark.parametrize("level", LEVELS)
def test_onnx_any_size(model: UNetPlusPlus, level: int, tmp_path) -> None:
    pruned = model.prune(level, "accurate")
    session = ort.InferenceSession(str(save_onnx(pruned, 32, tmp_path / "model.onnx")))
    for shape in [(1, 3, 32, 32), (3, 3, 37, 53)]:
        x = torch.randn(shape)
        (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.inference_mode():
            torch.testing.assert_close(torch.from_numpy(out), pruned(x), atol=1e-5, rtol=1e-4)
