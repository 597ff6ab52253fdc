"""Export a pruned model: a `torch.export` program and an ONNX graph.

- `.pt2` (torch.export): any batch size at the exported height and width (the served resolution;
  serving resizes every image to it). The zero-padding to a multiple of 16 depends on H and W, so
  torch.export specialises them.
- `.onnx` (the dynamo exporter): any batch size, height and width.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torch.export import Dim, ExportedProgram

MAX_BATCH = 256


def _example(module: nn.Module, size: int, batch: int = 2) -> torch.Tensor:
    # batch 2: torch.export specialises dimensions that are 0 or 1 in the example
    channels = module.config["in_channels"]  # type: ignore[index]
    return torch.randn(batch, channels, size, size)


def export_program(module: nn.Module, size: int) -> ExportedProgram:
    """Trace `module` (eval mode) for inputs (N, C, size, size), N from 1 to MAX_BATCH."""
    batch = Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(module.eval(), (_example(module, size),), dynamic_shapes={"x": {0: batch}})


def save_program(module: nn.Module, size: int, path: str | Path) -> Path:
    """Export and save as a `.pt2` file; load with `torch.export.load(path).module()`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(export_program(module, size), path)
    return path


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
