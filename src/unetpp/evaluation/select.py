"""The select stage: the fastest (level, mode) within `max_dice_drop` of the best, and its export."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetpp import layout as L
from unetpp.data.prepared import prepared_cases
from unetpp.errors import UserError
from unetpp.evaluation.guard_fit import fit_guard, reference_records
from unetpp.files import write_json
from unetpp.nn.checkpoint import atomic_save, load_checkpoint, model_of, model_payload
from unetpp.nn.networks import NodeNet
from unetpp.params import Params, SelectParams
from unetpp.runtime.served import ServedModel, first_stage_of

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
    """Choose, export the variant with its guard to models/pruned/, write models/selected.json, log the model
    to MLflow."""
    rows = list(json.loads((metrics_dir / "eval.json").read_text()).values())
    chosen, reason = choose(rows, params.select)
    model, meta = load_checkpoint(L.best_checkpoint(models_dir))
    pruned = model.prune(chosen["level"], chosen["mode"], probes=True)
    arch = served_arch(meta["arch"])
    tta = list(chosen.get("tta_flips") or [])
    weights = L.served_checkpoint(models_dir)
    fitted = export(pruned, arch, meta, tta, prepared, weights)
    selected = dict(
        level=chosen["level"],
        mode=chosen["mode"],
        tta_flips=tta,
        arch=arch,
        reason=reason,
        metrics=chosen,
        policy=params.select.model_dump(),
        weights=str(weights),
        guard=fitted,
        cascade=meta.get("cascade", {}).get("region"),  # the region rule of a cascade's second stage, or None
    )
    return log_selection(pruned, selected, params, models_dir, meta["image_size"])


def served_arch(arch: str) -> str:
    """The architecture a trained one is served as, cut to its variant."""
    return "unetpp_pruned" if arch == "unetpp" else "unet_inference"


SERVED_ENTRIES = ("class_names", "image_size", "geometry", "intensity")  # what a served stage keeps of best.pt


def served_cascade(cascade: dict[str, Any]) -> dict[str, Any]:
    """A cascade's entry with its first stage as it is served (`first_stage_of`)."""
    first = cascade["coarse"]
    cut = first_stage_of(model_of(first))
    kept = {k: first[k] for k in SERVED_ENTRIES if k in first}
    return {"coarse": model_payload(cut, served_arch(first["arch"]), **kept), "region": cascade["region"]}


def export(pruned: NodeNet, arch: str, meta: dict[str, Any], tta: list[int], prepared: Path | None, out: Path) -> dict:
    """Write `out` (models/pruned/model.pt): the pruned variant (a cascade: its second stage; the first at full
    depth) with the checkpoint entries it is served with (`unetpp.runtime.served.ServedConfig`), its guard fitted
    on `prepared` and the monitor's reference (val answered as served); returns what the guard was fitted on
    (empty without `prepared`: no guard)."""
    kept = {k: meta[k] for k in SERVED_ENTRIES if k in meta}
    if meta.get("cascade"):
        kept["cascade"] = served_cascade(meta["cascade"])
    payload = model_payload(pruned, arch, **kept, tta_flips=tta)
    fitted: dict[str, Any] = {}
    if prepared is not None:
        guard, fitted = fit_guard(ServedModel.of(copy.deepcopy(pruned), payload), prepared)
        payload["guard"] = guard.as_meta()
        guarded = ServedModel.of(copy.deepcopy(pruned), payload)
        payload["reference"] = reference_records(guarded, prepared_cases(prepared, "val"))  # the monitor's
    atomic_save(payload, out)
    return fitted


def log_selection(
    pruned: NodeNet, selected: dict[str, Any], params: Params, models_dir: Path, side: int, root: Path | None = None
) -> dict[str, Any]:
    """Log the exported variant (`export`'s checkpoint, `selected["weights"]`, beside the pickled module, with a
    `side`-px input example) to the pipeline's MLflow run (models/run.json; the store of the project at `root`,
    by default the working directory), tag the choice and write models/selected.json with the model's URI."""
    from unetpp import tracking

    weights, size = Path(selected["weights"]), side
    selected = dict(selected)
    with tracking.pipeline_run(params.tracking, models_dir, root):
        example = (
            np.random.default_rng(0).standard_normal((2, pruned.config["in_channels"], size, size)).astype(np.float32)
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
            extra_files=[str(weights)],  # weights + config: the registry and serving load it weights_only
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
        )
        metrics = selected["metrics"]
        tracking.mlflow.set_tags(
            {
                "selected_level": selected["level"],
                "selected_mode": selected["mode"],
                "selection_reason": selected["reason"],
                # a cascade: the logged module is its second stage; the chain is served from the extra file
                "served_stages": "cascade (whole image, then region)" if selected.get("cascade") else "one",
            }
        )
        tracking.mlflow.log_metrics(
            {"selected.dice_mean": metrics["dice_mean"], "selected.latency_ms": metrics["latency_ms"]}
        )
        selected["model_uri"] = info.model_uri
    write_json(L.selected_file(models_dir), selected)
    return selected


def _any_batch(signature: Any) -> Any:
    """Make the signature's batch dimension -1, so the logged model takes any batch size."""
    from mlflow.types.schema import Schema, TensorSpec

    def free(schema: Schema) -> Schema:
        return Schema([TensorSpec(s.type, (-1, *s.shape[1:]), s.name) for s in schema.inputs])

    signature.inputs, signature.outputs = free(signature.inputs), free(signature.outputs)
    return signature
