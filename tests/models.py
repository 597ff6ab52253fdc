"""Small registered models for the registry and serving tests: fitted in seconds, logged like `select` does."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.params import TINY, project_params
from unetpp.data.dataset import PreparedDataset
from unetpp.evaluation import select
from unetpp.layout import served_checkpoint
from unetpp.nn.networks import UNetPlusPlus
from unetpp.params import Params
from unetpp.runtime.geometry import Geometry
from unetpp.runtime.intensity import RGB, Intensity
from unetpp.training.losses import DeepSupervisionLoss

# params of the registry and serving tests: instance norm has no running statistics, so a few steps fit steadily
TINY_PARAMS = project_params(TINY, {"model": {"norm": "instance"}, "data": {"synthetic": {"count": 10}}})


def fit_tiny(
    params: Params, prepared: Path, steps: int = 100, seed: int = 0, intensity: Intensity = RGB
) -> UNetPlusPlus:
    """A UNet++ fitted for `steps` full-batch steps on the train split (read by `intensity`): clearly better
    than at random."""
    torch.manual_seed(seed)
    model = UNetPlusPlus(**params.model.build_kwargs(intensity.in_channels))
    if steps:
        data = PreparedDataset(prepared, "train", intensity, Geometry("whole", params.data.image_size))
        x = torch.stack([data[i][0] for i in range(len(data))])
        y = torch.stack([data[i][1] for i in range(len(data))])
        opt, loss_fn = torch.optim.Adam(model.parameters(), lr=1e-2), DeepSupervisionLoss()
        for _ in range(steps):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    return model.eval()


def log_selection(
    model: UNetPlusPlus,
    models: Path,
    params: Params,
    *,
    level: int = 2,
    mode: str = "fast",
    manifest_sha: str = "a" * 64,
    latency: float = 5.0,
    geometry: Geometry | None = None,
    tta_flips: tuple[int, ...] = (),
    intensity: Intensity = RGB,
    prepared: Path | None = None,
) -> Path:
    """What `unetpp select` leaves behind, written by select's own writers (`export`, `log_selection`) after a
    pipeline run like train's: models/pruned/model.pt, the logged model, selected.json, run.json; with
    `prepared`, the pruned model holds its probe heads, a guard fitted there and the monitor's reference."""
    import mlflow

    from unetpp import tracking

    pruned = model.prune(level, mode, probes=prepared is not None)
    meta = {
        "class_names": params.model.class_names,
        "image_size": params.data.image_size,
        "geometry": (geometry or Geometry("whole", params.data.image_size)).as_dict(),
        "intensity": intensity.as_dict(),
    }
    weights = served_checkpoint(models)
    fitted = select.export(pruned, "unetpp_pruned", meta, list(tta_flips), prepared, weights)
    experiment = tracking.configure(params.tracking, models)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.set_tags({"data_manifest_sha256": manifest_sha, "git_revision": "test"})
    tracking.write_run_file(run.info.run_id, experiment, models / "run.json")
    metrics = {"latency_ms": latency, "dice_mean": 0.5, "dice_disc": 0.5, "dice_cup": 0.5, "dice_mean_ci95": [0.4, 0.6]}
    selected = {"level": level, "mode": mode, "tta_flips": list(tta_flips), "arch": "unetpp_pruned"}
    selected |= {"reason": "a test's selection", "metrics": metrics, "weights": str(weights)}
    selected |= {"guard": fitted} if fitted else {}
    select.log_selection(pruned, selected, params, models, params.data.image_size, root=models)
    return models
