"""Every pruned level exports: torch.export (.pt2) and ONNX, with outputs equal to eager."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from unetpp.export import save_onnx, save_program
from unetpp.model import LEVELS, MODES, UNetPlusPlus

from .conftest import randomize_batchnorm


@pytest.fixture(scope="module")
def model() -> UNetPlusPlus:
    return randomize_batchnorm(UNetPlusPlus.from_preset("tiny")).eval()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", LEVELS)
def test_torch_export_any_batch(model: UNetPlusPlus, level: int, mode: str, tmp_path) -> None:
    pruned = model.prune(level, mode)
    path = save_program(pruned, 48, tmp_path / "model.pt2")
    loaded = torch.export.load(path).module()
    for batch in (1, 5):
        x = torch.randn(batch, 3, 48, 48)
        with torch.inference_mode():
            torch.testing.assert_close(loaded(x), pruned(x))


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
