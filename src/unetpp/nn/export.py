"""Export a pruned model to ONNX (the dynamo exporter): any batch size, height and width, for
runtimes other than PyTorch. The pipeline itself ships `model.pt` (weights + config)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim


def _example(module: nn.Module, size: int, batch: int = 2) -> torch.Tensor:
    # batch 2: torch.export specialises dimensions that are 0 or 1 in the example
    channels = module.config["in_channels"]  # type: ignore[index]
    return torch.randn(batch, channels, size, size)


def save_onnx(module: nn.Module, size: int, path: str | Path) -> Path:
    """Export to ONNX with dynamic batch, height and width."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    program = torch.onnx.export(
        module.eval(), (_example(module, size),), dynamic_shapes={"x": dims}, dynamo=True, verbose=False
    )
    program.save(str(path))
    return path
