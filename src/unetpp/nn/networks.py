"""UNet++ (Zhou et al., 2018) with deep supervision and inference-time pruning, and the U-Net baseline.

Nodes are named as in the paper: ``x_i_j`` is X^{i,j} at depth ``i`` (i = 0..4) and position ``j``
along its skip path. One engine, `NodeNet`, computes any set of nodes in dependency order; UNet++,
its pruned forms and the U-Net differ only in which nodes they hold and how they join skips.

Conventions every model here follows:

- Inputs are ``(N, C, H, W)``. Any H and W are accepted: the input is zero-padded at the bottom and
  right to the next multiple of 16 (the four 2x2 poolings need it) and every output is cropped
  back to ``H x W``, so output pixels line up with input pixels.
- ``forward`` returns logits, one tensor per head (training, deep supervision).
- ``predict`` and pruned modules return per-class probabilities in [0, 1] (sigmoid: classes are
  independent, so the cup can lie inside the disc). ``fast`` is the sigmoid of head ``level``;
  ``accurate`` is the mean of the sigmoids of heads 1..level, the paper's averaging of probabilities.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unetpp.nn.blocks import ConvBlock, Norm, Upsample, up_block, up_channels

DEPTH = 4
PAD_MULTIPLE = 2**DEPTH
# Heads start out predicting a foreground probability of 1% (Lin et al., 2017's prior), not 50%:
# the structures are small, and with a zero bias the background's probability mass swamps the soft
# Dice for most of a short training run. Training sets each class's own share (`set_head_prior`).
HEAD_PRIOR = 0.01
HEAD_PRIOR_LOGIT = math.log(HEAD_PRIOR / (1 - HEAD_PRIOR))
MAX_PRIOR = 0.5  # a class covering most of its images starts undecided, not sure
LEVELS = (1, 2, 3, 4)
Mode = Literal["fast", "accurate"]
MODES: tuple[Mode, ...] = ("fast", "accurate")

# (i, j, skips): node X^{i,j} concatenates X^{i,s} for s in skips with Up(X^{i+1,j-1}).
Node = tuple[int, int, tuple[int, ...]]

PRESETS: dict[str, dict[str, Any]] = {
    # Zhou et al.'s configuration; reproduces the paper's parameter counts exactly.
    "paper": dict(widths=(32, 64, 128, 256, 512), norm="none", upsample="transpose", in_channels=1, num_classes=1),
    # The seed article's 36.6M-parameter model (optic disc + cup on RGB fundus photographs).
    "seed": dict(widths=(64, 128, 256, 512, 1024), norm="batch", upsample="bilinear", in_channels=3, num_classes=2),
    # The paper's widths with batch norm (foldable at inference), RGB, disc + cup. (The pipeline's
    # network is whatever `model:` in params.yaml says.)
    "default": dict(widths=(32, 64, 128, 256, 512), norm="batch", upsample="transpose", in_channels=3, num_classes=2),
    # Small enough for unit tests and CI.
    "tiny": dict(widths=(8, 16, 32, 64, 128), norm="batch", upsample="transpose", in_channels=3, num_classes=2),
}


def nested_nodes(level: int = DEPTH) -> list[Node]:
    """UNet++ nodes with i + j <= level, ordered by anti-diagonal so inputs always come first."""
    return [(s - j, j, tuple(range(j))) for s in range(level + 1) for j in range(s + 1)]


def unet_nodes() -> list[Node]:
    """U-Net nodes: the encoder X^{i,0} and a decoder X^{4-j,j} joined to X^{4-j,0} only."""
    return [(i, 0, ()) for i in range(DEPTH + 1)] + [(DEPTH - j, j, (0,)) for j in range(1, DEPTH + 1)]


def _check_level_mode(level: int, mode: str, levels: tuple[int, ...]) -> None:
    if level not in levels:
        raise ValueError(f"level must be one of {levels} for this model; got {level!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")


def _head_ids(level: int, mode: str) -> tuple[int, ...]:
    return (level,) if mode == "fast" else tuple(range(1, level + 1))


def head_probabilities(logits: list[Tensor]) -> Tensor:
    """Per-class probabilities from heads' logits: the mean of their sigmoids (one head: its sigmoid)."""
    if len(logits) == 1:
        return torch.sigmoid(logits[0])
    return torch.stack([torch.sigmoid(t) for t in logits]).mean(0)


class NodeNet(nn.Module):
    """Holds the blocks of a set of nodes and heads on X^{0,j}, and computes just those."""

    def __init__(
        self,
        nodes: list[Node],
        heads: tuple[int, ...],
        *,
        in_channels: int = 3,
        num_classes: int = 2,
        widths: tuple[int, ...] | list[int] = (32, 64, 128, 256, 512),
        norm: Norm = "batch",
        upsample: Upsample = "transpose",
    ) -> None:
        super().__init__()
        if len(widths) != DEPTH + 1 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be {DEPTH + 1} positive integers (one per depth); got {widths!r}")
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1; got {in_channels}, {num_classes}")
        w = tuple(int(v) for v in widths)
        self.config: dict[str, Any] = dict(
            in_channels=in_channels, num_classes=num_classes, widths=w, norm=norm, upsample=upsample
        )
        self.nodes = tuple(nodes)
        self.head_ids = tuple(heads)
        self.pool = nn.MaxPool2d(2)
        self.blocks = nn.ModuleDict()
        self.ups = nn.ModuleDict()
        for i, j, skips in self.nodes:
            if j == 0:
                cin = in_channels if i == 0 else w[i - 1]
            else:
                self.ups[f"up_{i}_{j}"] = up_block(w[i + 1], w[i], upsample)
                cin = len(skips) * w[i] + up_channels(w[i + 1], w[i], upsample)
            self.blocks[f"x_{i}_{j}"] = ConvBlock(cin, w[i], norm)
        self.heads = nn.ModuleDict({f"head_{k}": nn.Conv2d(w[0], num_classes, 1) for k in self.head_ids})
        for head in self.heads.values():
            nn.init.constant_(head.bias, HEAD_PRIOR_LOGIT)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> NodeNet:
        """Build from a named preset (`PRESETS`), with any constructor argument overridden."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def _check_input(self, x: Tensor) -> None:
        expected = self.config["in_channels"]
        if x.ndim != 4 or x.shape[1] != expected:
            raise ValueError(f"expected input of shape (N, {expected}, H, W); got {tuple(x.shape)}")
        if self.config["norm"] == "instance" and x.shape[-2] <= PAD_MULTIPLE and x.shape[-1] <= PAD_MULTIPLE:
            raise ValueError(
                f"instance norm needs more than one pixel at depth {DEPTH}: H or W must exceed "
                f"{PAD_MULTIPLE}; got input of shape {tuple(x.shape)}"
            )

    def _run(self, x: Tensor, nodes: tuple[Node, ...], heads: tuple[int, ...]) -> list[Tensor]:
        """Compute `nodes` in order and return the logits of `heads`, cropped to the input size."""
        h, w = x.shape[-2:]
        feats = self._nodes(x, nodes)
        return [self.heads[f"head_{k}"](feats[(0, k)])[..., :h, :w] for k in heads]

    @property
    def answer_heads(self) -> tuple[int, ...]:
        """The heads whose mean is the answer (every head held, unless a pruned variant holds probes)."""
        return self.head_ids

    def _nodes(self, x: Tensor, nodes: tuple[Node, ...]) -> dict[tuple[int, int], Tensor]:
        """Every node's features, computed in order on `x` padded to a multiple of `PAD_MULTIPLE`."""
        self._check_input(x)
        h, w = x.shape[-2:]
        x = F.pad(x, (0, (-w) % PAD_MULTIPLE, 0, (-h) % PAD_MULTIPLE))
        feats: dict[tuple[int, int], Tensor] = {}
        for i, j, skips in nodes:
            if j == 0:
                inp = x if i == 0 else self.pool(feats[(i - 1, 0)])
            else:
                up = self.ups[f"up_{i}_{j}"](feats[(i + 1, j - 1)])
                inp = torch.cat([feats[(i, s)] for s in skips] + [up], dim=1)
            feats[(i, j)] = self.blocks[f"x_{i}_{j}"](inp)
        return feats

    def guard_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """What the served guard reads, from one pass: the probabilities of every head held, (N, heads,
        classes, H, W), and the deepest encoder node's features pooled to each channel's mean and standard
        deviation, (N, 2 x width): the variant's bottleneck (X^{L,0} for level L: nothing is computed
        that the variant does not compute anyway)."""
        feats = self._nodes(x, self.nodes)
        h, w = x.shape[-2:]
        logits = [self.heads[f"head_{k}"](feats[(0, k)])[..., :h, :w] for k in self.head_ids]
        probs = torch.sigmoid(torch.stack(logits, 1))
        deepest = feats[(max(i for i, j, _ in self.nodes if j == 0), 0)]
        return probs, torch.cat([deepest.mean(dim=(2, 3)), deepest.std(dim=(2, 3), correction=0)], 1)


class UNetPlusPlus(NodeNet):
    """UNet++ with four deep-supervision heads on X^{0,1..4} (one on X^{0,4} without it)."""

    def __init__(self, *, deep_supervision: bool = True, **config: Any) -> None:
        super().__init__(nested_nodes(), LEVELS if deep_supervision else (DEPTH,), **config)
        self.config["deep_supervision"] = deep_supervision

    @property
    def levels(self) -> tuple[int, ...]:
        """Pruning levels this model can answer at: each needs its own trained head."""
        return self.head_ids

    def forward(self, x: Tensor) -> list[Tensor]:
        """Logits of every head, in head order (the training forward)."""
        return self._run(x, self.nodes, self.head_ids)

    def predict(self, x: Tensor, level: int = DEPTH, mode: Mode = "accurate") -> Tensor:
        """Probabilities at `level` and `mode`, computing only the nodes with i + j <= level."""
        _check_level_mode(level, mode, self.levels)
        heads = tuple(k for k in _head_ids(level, mode) if k in self.head_ids)
        return head_probabilities(self._run(x, tuple(nested_nodes(level)), heads))

    def prune(self, level: int, mode: Mode = "fast", *, probes: bool = False) -> PrunedUNetPlusPlus:
        """A standalone copy holding only what `predict(x, level, mode)` uses, in eval mode. With `probes`,
        it also keeps the heads 1..level the answer does not use (1x1 convolutions on nodes it computes
        anyway): the served guard's ensemble (`guard_outputs`)."""
        _check_level_mode(level, mode, self.levels)
        if not self.config["deep_supervision"]:
            mode, probes = "fast", False  # one head: both modes are the same computation
        cfg = {k: v for k, v in self.config.items() if k != "deep_supervision"}
        pruned = PrunedUNetPlusPlus(level=level, mode=mode, probes=probes, **cfg)
        own = self.state_dict()
        pruned.load_state_dict({k: copy.deepcopy(own[k]) for k in pruned.state_dict()})
        return pruned.eval()


class PrunedUNetPlusPlus(NodeNet):
    """UNet++ cut to level L: nodes with i + j <= L and the heads that mode needs, nothing else."""

    def __init__(self, *, level: int = DEPTH, mode: Mode = "fast", probes: bool = False, **config: Any) -> None:
        _check_level_mode(level, mode, LEVELS)
        held = tuple(range(1, level + 1)) if probes else _head_ids(level, mode)
        super().__init__(nested_nodes(level), held, **config)
        self.config.update(level=level, mode=mode, probes=probes)
        self.level, self.mode = level, mode

    @property
    def answer_heads(self) -> tuple[int, ...]:
        return _head_ids(self.level, self.mode)

    def forward(self, x: Tensor) -> Tensor:
        """Probabilities of shape (N, num_classes, H, W)."""
        return head_probabilities(self._run(x, self.nodes, self.answer_heads))


class UNet(NodeNet):
    """The U-Net baseline, built from the same blocks as UNet++: one head on X^{0,4}."""

    def __init__(self, **config: Any) -> None:
        super().__init__(unet_nodes(), (DEPTH,), **config)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Logits of the one head, as a list so losses treat both architectures alike."""
        return self._run(x, self.nodes, self.head_ids)

    @property
    def levels(self) -> tuple[int, ...]:
        """A U-Net has one output: the full depth."""
        return (DEPTH,)

    def predict(self, x: Tensor, level: int = DEPTH, mode: Mode = "fast") -> Tensor:
        """Probabilities of shape (N, num_classes, H, W); `level` and `mode` only accept the full model."""
        _check_level_mode(level, mode, self.levels)
        return head_probabilities(self.forward(x))

    def prune(self, level: int = DEPTH, mode: Mode = "fast", *, probes: bool = False) -> UNetInference:
        """A standalone eval-mode copy returning probabilities, like `UNetPlusPlus.prune` (one head: nothing
        to probe, whatever `probes` says)."""
        _check_level_mode(level, mode, self.levels)
        pruned = UNetInference(**self.config)
        pruned.load_state_dict(copy.deepcopy(self.state_dict()))
        return pruned.eval()


class UNetInference(UNet):
    """A U-Net whose forward returns probabilities: the baseline's counterpart of a pruned UNet++."""

    def __init__(self, *, level: int = DEPTH, mode: Mode = "fast", **config: Any) -> None:
        _check_level_mode(level, mode, (DEPTH,))
        super().__init__(**config)
        self.config.update(level=level, mode=mode)
        self.level, self.mode = level, mode

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return head_probabilities(self._run(x, self.nodes, self.head_ids))


ARCHITECTURES: dict[str, type[NodeNet]] = {
    "unetpp": UNetPlusPlus,
    "unet": UNet,
    "unetpp_pruned": PrunedUNetPlusPlus,
    "unet_inference": UNetInference,
}


def set_head_prior(model: NodeNet, shares: list[float]) -> None:
    """Start every head at each class's foreground share of the images it trains on, within [`HEAD_PRIOR`,
    `MAX_PRIOR`] (Lin et al.'s prior, from the data: a photograph's disc covers 2% of it, the disc of a
    cascade's region a third; started at 1%, such a class was the last one learned)."""
    logits = torch.tensor([math.log(p / (1 - p)) for p in (min(MAX_PRIOR, max(HEAD_PRIOR, s)) for s in shares)])
    with torch.no_grad():
        for head in model.heads.values():
            head.bias.copy_(logits.to(head.bias))


def build_model(arch: str, **config: Any) -> NodeNet:
    """Build an architecture by name (`unetpp` or `unet`) from constructor arguments."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown arch {arch!r}; expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**config)


def variants(model: NodeNet) -> list[tuple[int, Mode]]:
    """The distinct (level, mode) pairs `model` answers at. Where both modes compute the same thing
    (one head: the U-Net, a UNet++ without deep supervision, and L1, whose average is head 1 alone),
    the pair is listed once, as `fast`."""
    levels: tuple[int, ...] = model.levels  # type: ignore[attr-defined]
    return [(lv, m) for lv in levels for m in (MODES if len(model.head_ids) > 1 and lv > 1 else ("fast",))]


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or not) the module holds."""
    return sum(p.numel() for p in module.parameters())
