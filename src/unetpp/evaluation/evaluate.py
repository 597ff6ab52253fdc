"""The evaluate stage: every pruning level x mode on the validation split — accuracy and cost.

Each variant is the pruned module that would ship (`prune`, batch norm folded, channels_last):
Dice, IoU and BCE per class, parameters, GFLOPs at the serving resolution, and the median latency
of batch-1 calls on the serving device.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from unetpp.data.dataset import PreparedDataset, make_loader
from unetpp.evaluation.metrics import SegmentationMetrics
from unetpp.evaluation.profile import count_flops, median_latency_ms
from unetpp.nn.checkpoint import load_checkpoint
from unetpp.nn.networks import count_parameters, variants
from unetpp.params import Params
from unetpp.runtime.inference import optimize_for_inference, resolve_device, run_inference


def variant_key(level: int, mode: str) -> str:
    return f"L{level}_{mode}"


def score(
    served: torch.nn.Module, loader: Iterable, names: list[str], device: torch.device, *, channels_last: bool
) -> dict[str, dict[str, float]]:
    """Dice, IoU and BCE per class (and their mean) of a probability-returning module over `loader`."""
    metrics = SegmentationMetrics(names)
    for x, y in loader:
        metrics.update(run_inference(served, x.to(device), channels_last=channels_last), y.to(device))
    return metrics.compute()


def measure(
    pruned: torch.nn.Module,
    level: int,
    mode: str,
    loader: Iterable,
    names: list[str],
    probe: torch.Tensor,
    params: Params,
    *,
    channels_last: bool,
) -> dict[str, Any]:
    """One variant's row: cost (parameters, GFLOPs, batch-1 latency on `probe`'s device) and accuracy."""
    ep, device = params.evaluate, probe.device
    flops = count_flops(pruned, tuple(probe.shape))
    n_params = count_parameters(pruned)
    served = optimize_for_inference(pruned, channels_last=channels_last)
    scores = score(served, loader, names, device, channels_last=channels_last)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    latency = median_latency_ms(
        lambda: (run_inference(served, probe, channels_last=channels_last), sync()),
        warmup=ep.warmup,
        repeats=ep.repeats,
    )
    row: dict[str, Any] = dict(
        key=variant_key(level, mode),
        level=level,
        mode=mode,
        parameters=n_params,
        gflops=flops / 1e9,
        latency_ms=latency,
        device=str(device),
    )
    for metric in ("dice", "iou", "bce"):
        row.update({f"{metric}_{c}": v for c, v in scores[metric].items()})
    print(
        f"{row['key']:12s} dice_mean {row['dice_mean']:.4f} latency {latency:8.2f} ms "
        f"{row['gflops']:6.2f} GFLOPs {n_params:>10,} params"
    )
    return row


def evaluate(params: Params, prepared: Path, models_dir: Path, metrics_dir: Path, plots_dir: Path) -> list[dict]:
    """Measure every variant; write eval.json, pruning.csv, the Pareto plot and overlays; log to MLflow."""
    from unetpp.evaluation.plots import overlays, pareto
    from unetpp.registry import tracking

    ep = params.evaluate
    device = resolve_device(ep.device, "evaluate.device")
    model, meta = load_checkpoint(models_dir / "best.pt", map_location=device)
    names, size = meta["class_names"], meta["image_size"]
    loader = make_loader(
        PreparedDataset(prepared, "val"), params.data, batch_size=ep.batch_size, shuffle=False
    )
    channels_last = device.type == "cpu" or params.train.channels_last
    probe = torch.randn(1, model.config["in_channels"], size, size, device=device)
    rows = [
        measure(model.prune(level, mode), level, mode, loader, names, probe, params, channels_last=channels_last)
        for level, mode in variants(model)
    ]

    metrics_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / "eval.json").write_text(json.dumps({r["key"]: r for r in rows}, indent=2) + "\n")
    with (plots_dir / "pruning.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pareto_png = pareto(rows, plots_dir / "pareto.png")
    best = max(rows, key=lambda r: r["dice_mean"])
    overlay_png = overlays(
        model.prune(best["level"], best["mode"]),
        PreparedDataset(prepared, "val"),
        names,
        ep.overlays,
        plots_dir / "overlays.png",
        device,
    )

    tracking.configure(params.tracking)
    with tracking.mlflow.start_run(run_id=tracking.read_run_id(models_dir / "run.json")):
        for r in rows:
            tracking.mlflow.log_metrics(
                {f"{r['key']}.{k}": float(v) for k, v in r.items() if k not in ("key", "level", "mode", "device")}
            )
        for path in (metrics_dir / "eval.json", plots_dir / "pruning.csv", pareto_png, overlay_png):
            tracking.mlflow.log_artifact(str(path), "evaluate")
    return rows
