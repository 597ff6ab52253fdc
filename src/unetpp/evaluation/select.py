"""The select stage: the fastest (level, mode) within `max_dice_drop` of the best, and its export."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetpp.errors import UserError
from unetpp.evaluation.guard import fit_guard, reference_records
from unetpp.evaluation.served import ServedModel, prepared_cases
from unetpp.nn.checkpoint import atomic_save, load_checkpoint, model_payload
from unetpp.params import Params, SelectParams

PACKAGE = Path(__file__).resolve().parents[1]  # src/unetpp: logged with the model as its code


class SelectionError(UserError):
    """No variant satisfies the policy."""


def choose(rows: list[dict[str, Any]], policy: SelectParams) -> tuple[dict[str, Any], str]:
    """The policy, and the sentence that explains its choice.

    Candidates have mean Dice >= best - max_dice_drop and, when set, latency <= max_latency_ms.
    Among them the lowest latency wins, where latencies within the measured noise (the largest spread
    of the candidates' calls, half an interquartile range) tie: a rerun would order them differently.
    Ties go to fewer GFLOPs (which do not vary between runs), then the higher Dice, the lower level,
    then `fast` (fewer heads).
    """
    if not rows:
        raise SelectionError("no evaluated variants to select from (metrics/eval.json is empty)")
    best = max(r["dice_mean"] for r in rows)
    floor = best - policy.max_dice_drop
    within = [r for r in rows if r["dice_mean"] >= floor]
    cap = policy.max_latency_ms
    candidates = [r for r in within if cap is None or r["latency_ms"] <= cap]
    if not candidates:
        fastest = min(within, key=lambda r: r["latency_ms"])
        raise SelectionError(
            f"no variant has mean Dice >= {floor:.4f} (best {best:.4f} - max_dice_drop {policy.max_dice_drop}) "
            f"and latency <= select.max_latency_ms={cap} ms; the fastest within tolerance is "
            f"{fastest['key']} at {fastest['latency_ms']:.2f} ms"
        )
    fastest = min(candidates, key=lambda r: r["latency_ms"])
    noise = max(r.get("latency_spread_ms", 0.0) for r in candidates)
    tied = [r for r in candidates if r["latency_ms"] <= fastest["latency_ms"] + noise]
    chosen = min(
        tied, key=lambda r: (r["gflops"], -r["dice_mean"], r["level"], r["mode"] != "fast", bool(r.get("tta_flips")))
    )
    reason = (
        f"{chosen['key']} is the fastest ({chosen['latency_ms']:.2f} ms; {len(tied)} within the {noise:.2f} ms noise "
        f"tie, the fewest GFLOPs wins) of {len(candidates)} variant(s) with mean "
        f"Dice >= {floor:.4f} (best {best:.4f} - {policy.max_dice_drop})"
        + (f" and latency <= {cap} ms" if cap is not None else "")
        + f"; its mean Dice is {chosen['dice_mean']:.4f}"
    )
    return chosen, reason


def select(params: Params, prepared: Path, metrics_dir: Path, models_dir: Path) -> dict[str, Any]:
    """Choose, fit the variant's guard, export to models/pruned/, write models/selected.json, log the model
    to MLflow."""
    from unetpp import tracking

    rows = list(json.loads((metrics_dir / "eval.json").read_text()).values())
    chosen, reason = choose(rows, params.select)
    model, meta = load_checkpoint(models_dir / "best.pt")
    pruned = model.prune(chosen["level"], chosen["mode"], probes=True)
    arch = "unetpp_pruned" if meta["arch"] == "unetpp" else "unet_inference"
    out = models_dir / "pruned"
    size = meta["image_size"]
    kept = {k: meta[k] for k in ("class_names", "image_size", "geometry", "intensity") if k in meta}
    tta = list(chosen.get("tta_flips") or [])
    payload = model_payload(pruned, arch, **kept, tta_flips=tta)
    guard, fitted = fit_guard(ServedModel.of(copy.deepcopy(pruned), payload), prepared)
    payload["guard"] = guard.as_meta()
    guarded = ServedModel.of(copy.deepcopy(pruned), payload)
    payload["reference"] = reference_records(guarded, prepared_cases(prepared, "val"))  # the monitor's
    atomic_save(payload, out / "model.pt")
    selected = dict(
        level=chosen["level"],
        mode=chosen["mode"],
        tta_flips=tta,
        arch=arch,
        reason=reason,
        metrics=chosen,
        policy=params.select.model_dump(),
        weights=str(out / "model.pt"),
        guard=fitted,
    )

    tracking.configure(params.tracking)
    with tracking.mlflow.start_run(run_id=tracking.read_run_id(models_dir / "run.json")):
        example = (
            np.random.default_rng(0).standard_normal((2, model.config["in_channels"], size, size)).astype(np.float32)
        )
        with torch.inference_mode():
            output = pruned(torch.from_numpy(example)).numpy()
        import mlflow.pytorch
        from mlflow.models import infer_signature

        info = mlflow.pytorch.log_model(
            pruned,
            name="model",
            serialization_format="pickle",
            code_paths=[str(PACKAGE)],
            signature=_any_batch(infer_signature(example, output)),
            input_example=example,
            extra_files=[str(out / "model.pt")],  # weights + config: the registry and serving load it weights_only
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        )
        tracking.mlflow.set_tags(
            {"selected_level": chosen["level"], "selected_mode": chosen["mode"], "selection_reason": reason}
        )
        tracking.mlflow.log_metrics(
            {"selected.dice_mean": chosen["dice_mean"], "selected.latency_ms": chosen["latency_ms"]}
        )
        selected["model_uri"] = info.model_uri
    (models_dir / "selected.json").write_text(json.dumps(selected, indent=2) + "\n")
    return selected


def _any_batch(signature: Any) -> Any:
    """Make the signature's batch dimension -1, so the logged model takes any batch size."""
    from mlflow.types.schema import Schema, TensorSpec

    def free(schema: Schema) -> Schema:
        return Schema([TensorSpec(s.type, (-1, *s.shape[1:]), s.name) for s in schema.inputs])

    signature.inputs, signature.outputs = free(signature.inputs), free(signature.outputs)
    return signature
