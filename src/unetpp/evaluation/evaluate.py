"""The evaluate stage: every pruning level x mode on the validation split — accuracy and cost.

Each variant is the pruned module that would ship (`prune`, batch norm folded, channels_last), run
the way it is served (`unetpp.runtime.geometry`: one forward, or sliding windows): Dice, IoU and BCE
per class on the network's grid, parameters, GFLOPs and the median latency of batch-1 calls on the
serving device for the median validation image.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from unetpp.data.dataset import PreparedDataset, make_loader
from unetpp.evaluation.metrics import SegmentationMetrics, mean_with_interval
from unetpp.evaluation.profile import count_flops, median_latency_ms
from unetpp.nn.checkpoint import load_checkpoint
from unetpp.nn.networks import count_parameters, variants
from unetpp.params import Params
from unetpp.runtime.geometry import Geometry, mirrorings, segment
from unetpp.runtime.inference import optimize_for_inference, resolve_device

MIN_CALLS = 3  # latency: the median of at least this many calls


def variant_key(level: int, mode: str, flips: tuple[int, ...] = ()) -> str:
    return f"L{level}_{mode}" + ("_tta" if flips else "")


def score(
    served: torch.nn.Module,
    loader: Iterable,
    names: list[str],
    device: torch.device,
    geometry: Geometry,
    *,
    channels_last: bool,
    flips: tuple[int, ...] = (),
) -> SegmentationMetrics:
    """Dice, IoU and BCE per class (`.compute()`) of a probability-returning module over `loader`, on the
    network's grid (`geometry`: one forward, or sliding windows), mirrored along `flips` when given."""
    metrics = SegmentationMetrics(names)
    for x, y in loader:
        probs = segment(served, x.to(device), geometry, channels_last=channels_last, flips=flips)
        metrics.update(probs, y.to(device))
    return metrics


def val_loader(prepared: Path, params: Params, geometry: Geometry) -> Iterable:
    """The validation split on `geometry`'s grid: batches of evaluate.batch_size, or single images of any
    size for sliding windows."""
    batch = params.evaluate.batch_size if geometry.mode == "whole" else 1
    return make_loader(
        PreparedDataset(prepared, "val", geometry=geometry), params.data, batch_size=batch, shuffle=False
    )


def measure(
    pruned: torch.nn.Module,
    level: int,
    mode: str,
    loader: Iterable,
    names: list[str],
    probe: torch.Tensor,
    geometry: Geometry,
    params: Params,
    *,
    channels_last: bool,
    flips: tuple[int, ...] = (),
) -> dict[str, Any]:
    """One variant's row: cost (parameters, GFLOPs and batch-1 latency on `probe`, an image on the network's
    grid, on its device) and accuracy."""
    ep, device = params.evaluate, probe.device
    windows = geometry.windows(*probe.shape[-2:])
    flops = count_flops(pruned, (1, probe.shape[1], geometry.size, geometry.size)) * windows * len(mirrorings(flips))
    n_params = count_parameters(pruned)
    served = optimize_for_inference(pruned, channels_last=channels_last)
    measured = score(served, loader, names, device, geometry, channels_last=channels_last, flips=flips)
    scores = measured.compute()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    # an image of many windows is many forwards already: fewer calls measure it as steadily
    calls = max(MIN_CALLS, -(-ep.repeats // windows))
    latency = median_latency_ms(
        lambda: (segment(served, probe, geometry, channels_last=channels_last, flips=flips), sync()),
        warmup=min(ep.warmup, calls),
        repeats=calls,
    )
    row: dict[str, Any] = dict(
        key=variant_key(level, mode, flips),
        level=level,
        mode=mode,
        tta_flips=list(flips),
        parameters=n_params,
        gflops=flops / 1e9,
        latency_ms=latency,
        device=str(device),
    )
    for metric in ("dice", "iou", "bce"):
        row.update({f"{metric}_{c}": v for c, v in scores[metric].items()})
    row["dice_mean_ci95"] = mean_with_interval(measured.per_sample_dice())["ci95"]
    print(
        f"{row['key']:12s} dice_mean {row['dice_mean']:.4f} latency {latency:8.2f} ms "
        f"{row['gflops']:6.2f} GFLOPs {n_params:>10,} params"
    )
    return row


def median_shape(dataset: PreparedDataset) -> tuple[int, int]:
    """The (height, width) of the split's median image on the network's grid: what latency is measured on."""
    shapes = sorted(dataset.arrays(i)[0].shape[:2] for i in range(len(dataset)))
    return shapes[len(shapes) // 2]


def evaluate(params: Params, prepared: Path, models_dir: Path, metrics_dir: Path, plots_dir: Path) -> list[dict]:
    """Measure every variant; write eval.json, pruning.csv, the Pareto plot and overlays; log to MLflow."""
    from unetpp.evaluation.plots import overlays, pareto
    from unetpp.registry import tracking

    ep = params.evaluate
    device = resolve_device(ep.device, "evaluate.device")
    model, meta = load_checkpoint(models_dir / "best.pt", map_location=device)
    names, geometry = meta["class_names"], Geometry.of(meta)
    loader = val_loader(prepared, params, geometry)
    channels_last = device.type == "cpu" or params.train.channels_last
    probe = torch.randn(1, model.config["in_channels"], *median_shape(loader.dataset), device=device)
    mirrored = tuple(meta.get("flip_axes") or ())  # test-time mirroring along the axes training flipped
    rows = [
        measure(
            model.prune(level, mode),
            level,
            mode,
            loader,
            names,
            probe,
            geometry,
            params,
            channels_last=channels_last,
            flips=flips,
        )
        for level, mode in variants(model)
        for flips in ([(), mirrored] if mirrored else [()])
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
    served = optimize_for_inference(model.prune(best["level"], best["mode"]), channels_last=channels_last)
    best_flips = tuple(best["tta_flips"])
    overlay_png = overlays(
        lambda x: segment(served, x.to(device), geometry, channels_last=channels_last, flips=best_flips),
        loader.dataset,
        names,
        ep.overlays,
        plots_dir / "overlays.png",
    )

    tracking.configure(params.tracking)
    with tracking.mlflow.start_run(run_id=tracking.read_run_id(models_dir / "run.json")):
        for r in rows:
            tracking.mlflow.log_metrics(
                {
                    f"{r['key']}.{k}": float(v)
                    for k, v in r.items()
                    if k not in ("key", "level", "mode", "device", "tta_flips", "dice_mean_ci95")
                }
            )
        for path in (metrics_dir / "eval.json", plots_dir / "pruning.csv", pareto_png, overlay_png):
            tracking.mlflow.log_artifact(str(path), "evaluate")
    return rows
