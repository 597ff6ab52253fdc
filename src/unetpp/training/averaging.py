"""An exponential moving average of the weights and batch-norm statistics (torch.optim.swa_utils).

Updated after every optimizer step, so its horizon is about 1 / (1 - decay) steps: 50 at decay 0.98.
What is validated, kept as best and exported is the average: a small validation set otherwise picks
its best epoch partly by the noise of the last few batches.
"""

from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def weight_average(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """The moving average of `model` (None when `decay` is None: the raw weights are kept)."""
    if decay is None:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def kept_model(model: nn.Module, average: AveragedModel | None) -> nn.Module:
    """The model that is validated and saved: the average when there is one."""
    return model if average is None else average.module
