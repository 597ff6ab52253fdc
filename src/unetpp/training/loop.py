"""The train stage: BCE + Dice on every head, Adam, StepLR, best epoch by validation Dice.

Resumable: `models/last.pt` (model, optimiser, scheduler, weight average, history, MLflow run id)
is rewritten atomically after every epoch; a rerun with the same resume key (params and data)
continues from it. It is this machine's scratch, not an output: DVC neither tracks nor pushes it
(a colleague's clone pulls `best.pt` and has nothing to resume). Epoch k's shuffling and augmentation
depend only on (seed, k), so a resumed run ends with the same result as an uninterrupted one. Under
`torchrun` it trains with DDP (gloo on CPU, NCCL on CUDA); rank 0 alone logs and writes checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader
from tqdm import tqdm

from unetpp import layout as L
from unetpp.data.augment import training_transform
from unetpp.data.dataset import PreparedDataset, RegionDataset, make_loader, set_epoch
from unetpp.data.prepared import MANIFEST
from unetpp.errors import DidNotLearn
from unetpp.files import write_csv, write_json
from unetpp.nn.checkpoint import atomic_save, model_payload
from unetpp.nn.networks import NodeNet, build_model, head_probabilities, set_head_prior
from unetpp.params import Params
from unetpp.planning.recipe import Recipe, load_recipe
from unetpp.runtime.forward import forward
from unetpp.runtime.geometry import Geometry
from unetpp.scoring.metrics import SegmentationMetrics
from unetpp.training.averaging import kept_model, weight_average
from unetpp.training.devices import autocast, distributed, training_device
from unetpp.training.learning_guard import check_learning, kept_epoch
from unetpp.training.losses import DeepSupervisionLoss
from unetpp.training.stopping import Ending, ending, goes_on


def resume_key(params: Params, recipe: Recipe, manifest: Path, stage: str = "whole") -> str:
    """What a checkpoint must share with this run to be resumed: model, recipe, image size, data and stage."""
    spec = dict(
        stage=stage,
        model=params.model.model_dump(),
        train=params.train.model_dump(),
        recipe=asdict(recipe),
        size=params.data.image_size,
    )
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    digest.update(manifest.read_bytes())
    return digest.hexdigest()


@dataclass
class TrainState:
    """Everything `last.pt` holds: what a resumed run continues from."""

    model: NodeNet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    average: AveragedModel | None
    epoch: int = 0  # epochs done
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float = -1.0
    run_id: str | None = None

    def checkpoint(self, key: str, complete: bool) -> dict[str, Any]:
        return dict(
            state_dict=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            **({} if self.average is None else {"ema": self.average.state_dict()}),
            epoch=self.epoch - 1,
            history=self.history,
            best_dice=self.best,
            run_id=self.run_id,
            resume_key=key,
            complete=complete,
        )

    def restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["state_dict"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.average is not None:
            self.average.load_state_dict(saved["ema"])
        self.epoch, self.history = saved["epoch"] + 1, saved["history"]
        self.best, self.run_id = saved["best_dice"], saved["run_id"]


def build_state(
    params: Params, recipe: Recipe, shares: list[float], device: torch.device, memory_format: torch.memory_format
) -> TrainState:
    """A fresh model whose heads start at the classes' foreground `shares` (`set_head_prior`), Adam, StepLR and
    (when the recipe has one) the weight average."""
    model = build_model(params.model.arch, **params.model.build_kwargs(recipe.intensity.in_channels))
    set_head_prior(model, shares)
    model.to(device).to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.train.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=params.train.gamma)
    return TrainState(model, optimizer, scheduler, weight_average(model, recipe.ema_decay))


def saved_run(last_path: Path, key: str, device: torch.device | str = "cpu") -> dict[str, Any] | None:
    """`last.pt` when it holds a run of the same resume key (finished or not: its `complete`), else None."""
    if not last_path.is_file():
        return None
    saved = torch.load(last_path, map_location=device, weights_only=True)
    return saved if saved.get("resume_key") == key else None


def taken(state: TrainState, last_path: Path, key: str, device: torch.device, *, complete: bool) -> bool:
    """Restore `state` from `last.pt` when it is a run of the same resume key that is `complete` or not: an
    unfinished run to resume, or a cascade's finished first stage to take while its second is under way."""
    saved = saved_run(last_path, key, device)
    if saved is None or bool(saved.get("complete")) != complete:
        return False
    state.restore(saved)
    return True


def open_run(
    params: Params, state: TrainState, manifest: Path, plans: Path, recipe: Recipe, device: torch.device, world: int
) -> Any:
    """Start (or reopen, when resuming) the pipeline's MLflow run; a new run gets params, the plan and tags."""
    from unetpp import tracking

    experiment_id = tracking.configure(params.tracking)
    run = tracking.mlflow.start_run(run_id=state.run_id, experiment_id=experiment_id)
    if state.run_id is None:
        tracking.mlflow.log_params(_flat(params.model_dump(by_alias=True)))
        tracking.mlflow.log_params({f"plan.{k}": v for k, v in asdict(recipe).items()})
        tracking.mlflow.log_artifact(str(plans), "plan")
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
    state.run_id = run.info.run_id
    return run


@dataclass(frozen=True)
class StepSetup:
    """How each optimisation step runs: the loss, the mixed-precision scaler and precision, the device and the
    memory layout of the batches."""

    loss_fn: nn.Module
    scaler: torch.amp.GradScaler
    precision: str
    device: torch.device
    memory_format: torch.memory_format


def train_epoch(net: nn.Module, state: TrainState, loader: DataLoader, step: StepSetup, label: str | None) -> float:
    """One pass over the training split (updating the weight average after each step); the mean loss. `label`
    names the progress bar (None: no bar, as on ranks other than 0)."""
    net.train()
    running, seen = 0.0, 0
    bar = tqdm(loader, desc=label, disable=label is None or not sys.stderr.isatty(), leave=False)
    for x, y in bar:
        x, y = x.to(step.device, memory_format=step.memory_format), y.to(step.device)
        state.optimizer.zero_grad(set_to_none=True)
        with autocast(step.device, step.precision):
            loss = step.loss_fn([t.float() for t in net(x)], y)
        step.scaler.scale(loss).backward()
        step.scaler.step(state.optimizer)
        step.scaler.update()
        if state.average is not None:
            state.average.update_parameters(state.model)
        running, seen = running + float(loss.detach()) * len(x), seen + len(x)
        bar.set_postfix(loss=f"{running / seen:.4f}")
    return running / seen


def evaluate_epoch(
    model: NodeNet, loader: DataLoader, loss_fn: nn.Module, names: list[str], device: torch.device, geometry: Geometry
) -> tuple[float, dict[str, dict[str, float]]]:
    """Validation loss (all heads) and metrics of the full model's prediction (UNet++: L4 accurate), on the
    plan's grid (sliding windows for patch plans)."""
    model.eval()
    metrics, total, count = SegmentationMetrics(names), 0.0, 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = forward(model, x, geometry)
            total += float(loss_fn(logits, y)) * len(x)
            count += len(x)
            metrics.update(head_probabilities(logits), y)
    return total / count, metrics.compute()


def epoch_row(epoch: int, lr: float, train_loss: float, val_loss: float, val: dict, names: list[str]) -> dict:
    """One line of the training curve."""
    return dict(
        epoch=epoch,
        lr=lr,
        train_loss=train_loss,
        val_loss=val_loss,
        **{f"dice_{c}": val["dice"][c] for c in [*names, "mean"]},
        **{f"iou_{c}": val["iou"][c] for c in [*names, "mean"]},
    )


@dataclass(frozen=True)
class Stage:
    """One network a run trains: the one-stage model, or a cascade's first (`coarse`: the whole image on the
    plan's grid) or second (`region`: the region around the targets on its own grid). `grid` is what
    validation runs on; `models` where its best.pt and last.pt go, `metrics` its train.json and curve (a
    first stage's: beside its checkpoints, scratch); `prefix` its MLflow metrics' prefix; `extends`: whether it
    goes on past the planned epochs while val improves (a cascade's first stage does not: its masks are never
    served, only the region they give)."""

    name: str
    grid: Geometry
    train: PreparedDataset
    val: PreparedDataset
    models: Path
    metrics: Path
    prefix: str = ""
    extends: bool = True

    @property
    def tag(self) -> str:
        """How its log lines start: nothing for a one-stage model, the stage's name in a cascade."""
        return "" if self.name == "whole" else f"{self.name} "


def stages(params: Params, recipe: Recipe, prepared: Path, models_dir: Path, metrics_dir: Path) -> list[Stage]:
    """The plan's stages in training order: one, or a cascade's first stage (into models/coarse/, scratch that
    the second's best.pt holds) then its second."""
    tp, geometry = params.train, recipe.geometry
    patch = geometry.size if geometry.mode == "patch" else None
    transform = training_transform(tp.seed, recipe.flip_axes, recipe.translate_px, augment=tp.augment, patch=patch)
    one = Stage(
        "whole" if recipe.region is None else "coarse",
        geometry,
        PreparedDataset(prepared, "train", recipe.intensity, geometry, augment=transform),
        PreparedDataset(prepared, "val", recipe.intensity, geometry),
        models_dir if recipe.region is None else L.coarse_models(models_dir),
        metrics_dir if recipe.region is None else L.coarse_models(models_dir),
        "" if recipe.region is None else "coarse.",
        extends=recipe.region is None,
    )
    if recipe.region is None:
        return [one]
    # the region's jitter moves the box: no shifts on top of it
    jitter = training_transform(tp.seed, recipe.flip_axes, 0, augment=tp.augment, patch=None)
    region = Stage(
        "region",
        Geometry("whole", recipe.region.size),
        RegionDataset(prepared, "train", recipe.intensity, recipe.region, augment=jitter),
        RegionDataset(prepared, "val", recipe.intensity, recipe.region),
        models_dir,
        metrics_dir,
    )
    return [one, region]


def train(params: Params, prepared: Path, plans: Path, models_dir: Path, metrics_dir: Path) -> dict[str, Any]:
    """Train (or resume) by the plan's recipe, each of its stages in turn; write best.pt, last.pt, train.json,
    train_curve.csv; the summary (a cascade's: its second stage's, with the first's under `first_stage`)."""
    from unetpp import tracking

    recipe = load_recipe(plans)
    rank, world = distributed()
    tp = params.train
    device = training_device(tp.device)
    # = use_deterministic_algorithms(True, warn_only=True) without its import of Inductor's config (2-6 s a stage)
    torch.set_deterministic_debug_mode("warn")
    planned = stages(params, recipe, prepared, models_dir, metrics_dir)
    keys = [resume_key(params, recipe, prepared / MANIFEST, stage.name) for stage in planned]
    # a first stage is taken as it is only while the second is under way (its last.pt unfinished, same key)
    saved = saved_run(L.last_checkpoint(planned[-1].models), keys[-1]) if len(planned) > 1 else None
    second = saved is not None and not saved.get("complete")
    run_id = None
    summaries: list[dict[str, Any]] = []
    try:
        for stage, key in zip(planned, keys, strict=True):
            torch.manual_seed(tp.seed)
            first = summaries[0] if summaries else None
            take = second and stage is not planned[-1]
            own = recipe if stage.extends else replace(recipe, cap_epochs=recipe.epochs)
            summary, run_id = fit(params, own, stage, key, take, prepared, plans, (rank, world, device), run_id)
            summaries.append(summary)
            if first is not None and rank == 0:
                summary["first_stage"] = first
                write_json(stage.metrics / "train.json", summary)
    finally:
        if rank == 0 and tracking.mlflow.active_run() is not None:
            tracking.mlflow.end_run()
        if world > 1:
            dist.destroy_process_group()
    return summaries[-1]


def fit(
    params: Params,
    recipe: Recipe,
    stage: Stage,
    key: str,
    take: bool,
    prepared: Path,
    plans: Path,
    where: tuple[int, int, torch.device],
    run_id: str | None,
) -> tuple[dict[str, Any], str | None]:
    """Train one stage to its end (`take`: take its finished run of the same resume `key`); its summary and the
    MLflow run it logged to. Raises `DidNotLearn` on every rank once its outputs are written, when the learning
    guard refuses it."""
    from unetpp import tracking

    rank, world, device = where
    tp, names = params.train, params.model.class_names
    train_loader = make_loader(
        stage.train, params.data, batch_size=recipe.batch_size, shuffle=True, seed=tp.seed, rank=rank, world=world
    )
    val_batch = recipe.batch_size if stage.grid.mode == "whole" else 1  # windows: images may differ in size
    val_loader = make_loader(stage.val, params.data, batch_size=val_batch, shuffle=False)
    memory_format = torch.channels_last if tp.channels_last else torch.contiguous_format
    state = build_state(params, recipe, stage.train.foreground(), device, memory_format)
    scaler = torch.amp.GradScaler(device.type, enabled=tp.precision == "fp16")
    loss_fn = DeepSupervisionLoss(tp.head_weights, tp.bce_weight, tp.dice_weight, dice_per_image=tp.dice_per_image)
    step = StepSetup(loss_fn, scaler, tp.precision, device, memory_format)

    manifest = prepared / MANIFEST
    say: Callable[[str], None] = (lambda m: print(m, flush=True)) if rank == 0 else (lambda m: None)
    last_path, best_path = L.last_checkpoint(stage.models), L.best_checkpoint(stage.models)
    stage.models.mkdir(parents=True, exist_ok=True)
    going = True
    if take and best_path.is_file() and taken(state, last_path, key, device, complete=True):
        say(f"{stage.tag}finished before, as {last_path} says; taken as it is")
        going = False
    elif taken(state, last_path, key, device, complete=False):
        say(f"{stage.tag}resuming from {last_path} after epoch {state.epoch}")
    net = DistributedDataParallel(state.model) if world > 1 else state.model
    state.run_id = state.run_id or run_id
    if rank == 0 and tracking.mlflow.active_run() is None:
        open_run(params, state, manifest, plans, recipe, device, world)
    while going:
        set_epoch(train_loader, tp.seed, state.epoch)
        label = f"{stage.tag}epoch {state.epoch + 1}/{_of(state.epoch + 1, recipe)}" if rank == 0 else None
        loss = train_epoch(net, state, train_loader, step, label)
        lr = state.optimizer.param_groups[0]["lr"]
        state.scheduler.step()
        state.epoch += 1
        due = state.epoch % recipe.val_every == 0 or state.epoch in (recipe.epochs, recipe.cap_epochs)
        if rank == 0 and not due:
            tracking.mlflow.log_metrics({f"{stage.prefix}train_loss": loss, f"{stage.prefix}lr": lr}, step=state.epoch)
        elif rank == 0:
            kept = kept_model(state.model, state.average)
            val_loss, val = evaluate_epoch(kept, val_loader, loss_fn, names, device, stage.grid)
            row = epoch_row(state.epoch, lr, loss, val_loss, val, names)
            state.history.append(row)
            if val["dice"]["mean"] > state.best:
                state.best = val["dice"]["mean"]
                atomic_save(best_payload(kept, params, recipe, stage, state.epoch, val), best_path)
            metrics = {f"{stage.prefix}{k}": v for k, v in row.items() if k != "epoch"}
            tracking.mlflow.log_metrics(metrics, step=state.epoch)
            say(
                f"{stage.tag}epoch {state.epoch}/{_of(state.epoch, recipe)} loss {loss:.4f} val {val_loss:.4f} "
                + " ".join(f"dice_{c} {val['dice'][c]:.4f}" for c in names)
            )
        going = _agreed(
            rank == 0
            and goes_on(state.epoch, state.history, recipe.epochs, recipe.cap_epochs, recipe.patience, tp.min_delta),
            world,
        )
        if rank == 0:
            atomic_save(state.checkpoint(key, complete=not going), last_path)
    summary: dict[str, Any] = {}
    verdict: str | DidNotLearn = ""
    if rank == 0:
        end = ending(state.epoch, state.history, recipe.epochs, recipe.cap_epochs, recipe.patience, tp.min_delta)
        verdict = guard(state.history, params, recipe, end, stage, prepared)
        summary = _write_outputs(state.history, names, stage, state.run_id, end, verdict)
    if _agreed(isinstance(verdict, DidNotLearn), world):  # every rank stops, not only rank 0
        raise verdict if isinstance(verdict, DidNotLearn) else DidNotLearn(f"{stage.name}: refused on rank 0")
    return summary, state.run_id


def best_payload(
    kept: NodeNet, params: Params, recipe: Recipe, stage: Stage, epoch: int, val: dict[str, Any]
) -> dict[str, Any]:
    """best.pt: the kept model and what every later stage reads of it (`unetpp.runtime.served.ServedConfig`); a
    cascade's second stage also holds its first (its best.pt, as trained) and the region rule."""
    meta = dict(
        class_names=params.model.class_names,
        image_size=params.data.image_size,
        geometry=stage.grid.as_dict(),
        intensity=recipe.intensity.as_dict(),  # what a request must be and how it is read
        flip_axes=list(recipe.flip_axes),  # what test-time mirroring may use: trained invariant to
        epoch=epoch,
        val=val,
    )
    if stage.name == "region" and recipe.region is not None:
        first = L.best_checkpoint(L.coarse_models(stage.models))
        meta["cascade"] = {
            "coarse": torch.load(first, map_location="cpu", weights_only=True),
            "region": recipe.region.as_dict(),
        }
    return model_payload(kept, params.model.arch, **meta)


def _of(epoch: int, recipe: Recipe) -> str:
    """The epoch's denominator in the log: the planned epochs, or past them the cap."""
    return str(recipe.epochs) if epoch <= recipe.epochs else f"{recipe.epochs}+ (improving; cap {recipe.cap_epochs})"


def _agreed(flag: bool, world: int) -> bool:
    """Rank 0's decision, on every rank (only rank 0 validates)."""
    if world == 1:
        return flag
    decided = torch.tensor([int(flag)])
    dist.broadcast(decided, src=0)
    return bool(decided.item())


def guard(
    history: list[dict[str, Any]],
    params: Params,
    recipe: Recipe,
    end: Ending,
    stage: Stage,
    prepared: Path,
) -> str | DidNotLearn:
    """The learning guard's verdict (`unetpp.training.learning_guard`), tagged on the MLflow run and printed
    when it warns: `passed`, the warning of a run still learning at its cap, or the `DidNotLearn` to raise
    once the outputs are written. `passed (off)` when `train.learning_guard` is off."""
    from unetpp import tracking

    if not params.train.learning_guard:
        return "passed (off)"
    if isinstance(stage.val, RegionDataset):
        train: PreparedDataset = RegionDataset(prepared, "train", recipe.intensity, stage.val.region)
    else:
        train = PreparedDataset(prepared, "train", recipe.intensity, Geometry("whole", params.data.image_size))
    try:
        warning = check_learning(history, params, recipe, end, train, stage.val)
    except DidNotLearn as err:
        tracking.mlflow.set_tags({"learning_guard": "failed", "learning_guard.reason": str(err)[:5000]})
        return err
    if warning:
        print(f"warning: {warning}", flush=True)
        tracking.mlflow.set_tags({"learning_guard": "still learning", "learning_guard.reason": warning[:5000]})
        return warning
    tracking.mlflow.set_tag("learning_guard", "passed")
    return "passed"


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _write_outputs(
    history: list[dict[str, Any]],
    names: list[str],
    stage: Stage,
    run_id: str,
    end: Ending,
    verdict: str | DidNotLearn,
) -> dict[str, Any]:
    """The stage's train.json, train_curve.csv, the curve PNG, run.json; all logged to the run."""
    from unetpp import tracking
    from unetpp.scoring.plots import training_curve

    best = kept_epoch(history)
    summary = dict(
        best_epoch=best["epoch"],
        epochs=end.epochs,  # trained, not validated (validation runs every recipe.val_every epochs)
        ended=end.as_dict(),  # planned, past them until val stopped improving, or at the cap
        learning_guard=str(verdict) if isinstance(verdict, str) else f"failed: {verdict}",
        validations=len(history),
        best={k: v for k, v in best.items() if k.startswith(("dice_", "iou_", "val_loss"))},
        final_train_loss=history[-1]["train_loss"],
    )
    write_json(stage.metrics / "train.json", summary)
    write_csv(stage.metrics / "train_curve.csv", history)
    curve = training_curve(history, names, stage.metrics / "train_curve.png")
    tracking.write_run_file(run_id, tracking.mlflow.get_run(run_id).info.experiment_id, L.run_file(stage.models))
    tracking.mlflow.log_metrics({f"{stage.prefix}best_{k}": v for k, v in summary["best"].items()})
    under = "" if stage.name == "whole" else f"/{stage.name}"  # a one-stage run's paths as they were
    tracking.mlflow.log_artifact(str(curve), f"plots{under}")
    tracking.mlflow.log_artifact(str(L.best_checkpoint(stage.models)), f"checkpoints{under}")
    return summary
