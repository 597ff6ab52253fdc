"""The evaluate stage: every pruning level x mode on the validation split — accuracy and cost.

Each variant is the pruned module that would ship (`prune`, batch norm folded, channels_last), scored
as served (`unetpp.scoring.cases`): each validation image, decoded from its source file as a
request is, segmented by the handler's code path, its masks at the source resolution against the source
masks — Dice, IoU, HD95 and BCE per class, failed cases; then parameters, GFLOPs and the median latency
of batch-1 calls on the serving device for the median validation image on the network's grid.
Training's per-epoch validation stays on the network's grid (it runs every few epochs and must be
cheap); `metrics/eval.json` records both figures of the full model, so their difference is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unetpp import layout as L
from unetpp.data.prepared import Case, prepared_cases
from unetpp.files import write_csv, write_json
from unetpp.nn.checkpoint import load_checkpoint
from unetpp.nn.networks import count_parameters, variants
from unetpp.params import Params
from unetpp.runtime.forward import mirrorings, segment
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.inference import resolve_device
from unetpp.runtime.served import ServedModel
from unetpp.scoring.cases import score_cases, summarize
from unetpp.scoring.cost import count_flops, median_latency_ms

MIN_CALLS = 3  # latency: the median of at least this many calls


def variant_key(level: int, mode: str, flips: tuple[int, ...] = ()) -> str:
    return f"L{level}_{mode}" + ("_tta" if flips else "")


def measure(
    model: ServedModel, level: int, mode: str, cases: list[Case], device: torch.device, params: Params
) -> dict[str, Any]:
    """One variant's row: accuracy as served on `cases`, and cost (parameters, GFLOPs and batch-1 latency of
    every stage a request passes, each on a probe of the median image on its grid, on `device`)."""
    ep, stages, flips = params.evaluate, model.stages, model.config.flips
    channels = model.config.intensity.in_channels
    probes = [torch.randn(1, channels, *median_shape(cases, s.config.geometry), device=device) for s in stages]
    windows = sum(s.config.geometry.windows(*p.shape[-2:]) for s, p in zip(stages, probes, strict=True))
    flops = sum(
        count_flops(s.module, (1, channels, s.config.geometry.size, s.config.geometry.size))
        * s.config.geometry.windows(*p.shape[-2:])
        * len(mirrorings(s.config.flips))
        for s, p in zip(stages, probes, strict=True)
    )
    rows = score_cases(model, cases, ep.batch_size)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def call() -> None:
        for s, p in zip(stages, probes, strict=True):
            segment(s.module, p, s.config.geometry, flips=s.config.flips)
        sync()

    # an image of many windows is many forwards already: fewer calls measure it as steadily
    calls = max(MIN_CALLS, -(-ep.repeats // windows))
    latency, spread = median_latency_ms(call, warmup=min(ep.warmup, calls), repeats=calls)
    row: dict[str, Any] = dict(
        key=variant_key(level, mode, flips),
        level=level,
        mode=mode,
        tta_flips=list(flips),
        parameters=sum(count_parameters(s.module) for s in stages),
        gflops=flops / 1e9,
        latency_ms=latency,
        latency_spread_ms=spread,
        device=str(device),
        cases=len(rows),
    )
    summary = summarize(rows, model.names)
    row |= {k: v["mean"] if isinstance(v, dict) else v for k, v in summary.items()}
    row["dice_mean_ci95"] = summary["dice_mean"]["ci95"]
    print(
        f"{row['key']:12s} dice_mean {row['dice_mean']:.4f} latency {latency:8.2f} ms "
        f"{row['gflops']:6.2f} GFLOPs {row['parameters']:>10,} params"
    )
    return row


def median_shape(cases: list[Case], geometry: Geometry) -> tuple[int, int]:
    """The (height, width) of the split's median image on the network's grid: what latency is measured on (a
    cascade's second stage: its region's grid, one size)."""
    shapes = sorted(geometry.shape_of(*c.image.shape[:2]) for c in cases)
    return shapes[len(shapes) // 2]


def evaluate(params: Params, prepared: Path, models_dir: Path, metrics_dir: Path, plots_dir: Path) -> list[dict]:
    """Measure every variant; write eval.json, pruning.csv, the Pareto plot and overlays; log to MLflow."""
    from unetpp import tracking
    from unetpp.scoring.plots import overlays, pareto

    device = resolve_device(params.evaluate.device, "evaluate.device")
    model, meta = load_checkpoint(L.best_checkpoint(models_dir), map_location=device)
    cases = list(prepared_cases(prepared, "val"))
    mirrored = tuple(meta.get("flip_axes") or ())  # test-time mirroring along the axes training flipped
    rows = [
        measure(ServedModel.of(model.prune(level, mode).to(device), meta, flips), level, mode, cases, device, params)
        for level, mode in variants(model)
        for flips in ([(), mirrored] if mirrored else [()])
    ]
    full = max(rows, key=lambda r: (r["level"], r["mode"] == "accurate", not r["tta_flips"]))
    full["grid_dice_mean"] = float(meta["val"]["dice"]["mean"])  # training's validation of the kept epoch
    print(
        f"full model on val: dice_mean {full['grid_dice_mean']:.4f} on the network's grid (training's validation), "
        f"{full['dice_mean']:.4f} as served at the source resolution"
    )
    metrics_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    write_json(metrics_dir / "eval.json", {r["key"]: r for r in rows})
    write_csv(plots_dir / "pruning.csv", rows)
    pareto_png = pareto(rows, plots_dir / "pareto.png")
    best = max(rows, key=lambda r: r["dice_mean"])
    served = ServedModel.of(model.prune(best["level"], best["mode"]).to(device), meta, tuple(best["tta_flips"]))
    overlay_png = overlays(served, cases, params.evaluate.overlays, plots_dir / "overlays.png")

    with tracking.pipeline_run(params.tracking, models_dir):
        for r in rows:
            tracking.mlflow.log_metrics(
                {
                    f"{r['key']}.{k}": float(v)
                    for k, v in r.items()
                    if isinstance(v, int | float) and k not in ("level",)
                }
            )
        for path in (metrics_dir / "eval.json", plots_dir / "pruning.csv", pareto_png, overlay_png):
            tracking.mlflow.log_artifact(str(path), "evaluate")
    return rows
