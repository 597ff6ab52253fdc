"""The train stage: BCE + Dice on every head, Adam, StepLR, best epoch by validation Dice.

Resumable: `models/last.pt` (model, optimiser, scheduler, history, MLflow run id) is rewritten
atomically after every epoch; a rerun with the same fingerprint (params and data) continues from
it. Epoch k's shuffling and augmentation depend only on (seed, k), so a resumed run ends with the
same result as an uninterrupted one. Under `torchrun` it trains with DDP (gloo on CPU, NCCL on
CUDA); rank 0 alone logs and writes checkpoints.

With `train.ema_decay` set, the model validated, kept as best and exported is an exponential moving
average of the weights and batch-norm statistics (torch.optim.swa_utils): without it, a small
validation set picks its best epoch partly by the noise of the last few batches.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from unetpp.checkpoint import atomic_save, model_payload
from unetpp.data.dataset import PreparedDataset, make_loader, set_epoch
from unetpp.losses import DeepSupervisionLoss
from unetpp.metrics import SegmentationMetrics
from unetpp.model import NodeNet, build_model
from unetpp.params import Params


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def fingerprint(params: Params, manifest: Path) -> str:
    """What a checkpoint must share with this run to be resumed: model, recipe, image size and data."""
    spec = dict(model=params.model.model_dump(), train=params.train.model_dump(), size=params.data.image_size)
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    digest.update(manifest.read_bytes())
    return digest.hexdigest()


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision 'fp16' needs CUDA; use 'bf16' or 'fp32' on CPU")
    return torch.autocast(device.type, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def _distributed() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def evaluate_epoch(
    model: NodeNet, loader: torch.utils.data.DataLoader, loss_fn: nn.Module, names: list[str], device: torch.device
) -> tuple[float, dict[str, dict[str, float]]]:
    """Validation loss (all heads) and metrics of the full model's prediction (UNet++: L4 accurate)."""
    model.eval()
    metrics, total, count = SegmentationMetrics(names), 0.0, 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += float(loss_fn(logits, y)) * len(x)
            count += len(x)
            probs = torch.stack([torch.sigmoid(t) for t in logits]).mean(0)
            metrics.update(probs, y)
    return total / count, metrics.compute()


def train(params: Params, prepared: Path, models_dir: Path, metrics_dir: Path) -> dict[str, Any]:
    """Train (or resume) and write best.pt, last.pt, train.json and train_curve.csv; returns the summary."""
    from unetpp import tracking

    rank, world = _distributed()
    tp, names = params.train, params.model.class_names
    device = resolve_device(tp.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    torch.manual_seed(tp.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)

    train_ds = PreparedDataset(prepared, "train", augment=tp.augment, seed=tp.seed)
    val_ds = PreparedDataset(prepared, "val")
    train_loader = make_loader(
        train_ds, params.data, batch_size=tp.batch_size, shuffle=True, seed=tp.seed, rank=rank, world=world
    )
    val_loader = make_loader(val_ds, params.data, batch_size=tp.batch_size, shuffle=False)

    model = build_model(params.model.arch, **params.model.build_kwargs()).to(device)
    memory_format = torch.channels_last if tp.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=tp.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=tp.step_size, gamma=tp.gamma)
    ema = (
        AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tp.ema_decay), use_buffers=True)
        if tp.ema_decay is not None
        else None
    )
    scaler = torch.amp.GradScaler(device.type, enabled=tp.precision == "fp16")
    loss_fn = DeepSupervisionLoss(tp.head_weights, tp.bce_weight, tp.dice_weight, dice_per_image=tp.dice_per_image)

    manifest = prepared / "manifest.csv"
    print_ = (lambda *a: print(*a, flush=True)) if rank == 0 else (lambda *a: None)
    fp = fingerprint(params, manifest)
    last_path, best_path = models_dir / "last.pt", models_dir / "best.pt"
    start, history, best, run_id = 0, [], -1.0, None
    if last_path.is_file():
        state = torch.load(last_path, map_location=device, weights_only=True)
        if state.get("fingerprint") == fp and not state.get("complete"):
            model.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            start, history, best, run_id = state["epoch"] + 1, state["history"], state["best_dice"], state["run_id"]
            print_(f"resuming from {last_path} after epoch {start}")
    net = DistributedDataParallel(model) if world > 1 else model

    run = None
    if rank == 0:
        experiment_id = tracking.configure(params.tracking)
        run = tracking.mlflow.start_run(run_id=run_id, experiment_id=experiment_id)
        run_id = run.info.run_id
        if start == 0:
            tracking.mlflow.log_params(_flat(params.model_dump(by_alias=True)))
            tracking.mlflow.set_tags(
                {
                    "git_revision": tracking.git_revision(),
                    "data_manifest_sha256": tracking.file_sha256(manifest),
                    "data_source": params.data.source,
                    "device": str(device),
                    "arch": params.model.arch,
                    "world_size": str(world),
                }
            )
    try:
        for epoch in range(start, tp.epochs):
            set_epoch(train_loader, tp.seed, epoch)
            net.train()
            running, seen = 0.0, 0
            bar = tqdm(
                train_loader,
                desc=f"epoch {epoch + 1}/{tp.epochs}",
                disable=rank != 0 or not sys.stderr.isatty(),
                leave=False,
            )
            for x, y in bar:
                x, y = x.to(device, memory_format=memory_format), y.to(device)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(device, tp.precision):
                    loss = loss_fn([t.float() for t in net(x)], y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update_parameters(model)
                running, seen = running + float(loss.detach()) * len(x), seen + len(x)
                bar.set_postfix(loss=f"{running / seen:.4f}")
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            if rank != 0:
                dist.barrier()
                continue
            kept = model if ema is None else ema.module
            val_loss, val = evaluate_epoch(kept, val_loader, loss_fn, names, device)
            row = dict(
                epoch=epoch + 1,
                lr=lr,
                train_loss=running / seen,
                val_loss=val_loss,
                **{f"dice_{c}": val["dice"][c] for c in [*names, "mean"]},
                **{f"iou_{c}": val["iou"][c] for c in [*names, "mean"]},
            )
            history.append(row)
            if val["dice"]["mean"] > best:
                best = val["dice"]["mean"]
                atomic_save(
                    model_payload(
                        kept,
                        params.model.arch,
                        class_names=names,
                        image_size=params.data.image_size,
                        epoch=epoch + 1,
                        val=val,
                    ),
                    best_path,
                )
            atomic_save(
                dict(
                    state_dict=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    **({} if ema is None else {"ema": ema.state_dict()}),
                    epoch=epoch,
                    history=history,
                    best_dice=best,
                    run_id=run_id,
                    fingerprint=fp,
                    complete=epoch + 1 == tp.epochs,
                ),
                last_path,
            )
            tracking.mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=epoch + 1)
            print_(
                f"epoch {epoch + 1}/{tp.epochs} loss {row['train_loss']:.4f} val {val_loss:.4f} "
                + " ".join(f"dice_{c} {val['dice'][c]:.4f}" for c in names)
            )
            if world > 1:
                dist.barrier()
        summary = {}
        if rank == 0:
            summary = _write_outputs(history, names, metrics_dir, models_dir, run_id, params)
    finally:
        if run is not None:
            tracking.mlflow.end_run()
        if world > 1:
            dist.destroy_process_group()
    return summary


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _write_outputs(
    history: list[dict[str, Any]], names: list[str], metrics_dir: Path, models_dir: Path, run_id: str, params: Params
) -> dict[str, Any]:
    """metrics/train.json, metrics/train_curve.csv, the curve PNG, run.json; all logged to the run."""
    from unetpp import tracking
    from unetpp.plots import training_curve

    best = max(history, key=lambda r: r["dice_mean"])
    summary = dict(
        best_epoch=best["epoch"],
        epochs=len(history),
        best={k: v for k, v in best.items() if k.startswith(("dice_", "iou_", "val_loss"))},
        final_train_loss=history[-1]["train_loss"],
    )
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (metrics_dir / "train_curve.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    curve = training_curve(history, names, metrics_dir / "train_curve.png")
    tracking.write_run_file(run_id, tracking.mlflow.get_run(run_id).info.experiment_id, models_dir / "run.json")
    tracking.mlflow.log_metrics({f"best_{k}": v for k, v in summary["best"].items()})
    tracking.mlflow.log_artifact(str(curve), "plots")
    tracking.mlflow.log_artifact(str(models_dir / "best.pt"), "checkpoints")
    return summary
