"""The monitor's library half (the Prefect flow `pipelines/monitor.py` composes it): the champion's recent
requests against its reference, logged to MLflow, and on drift without new labels the least confident kept
inputs exported as a folder to label."""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from unetpp import layout as L
from unetpp import tracking
from unetpp.errors import UserError
from unetpp.monitoring.drift import compare
from unetpp.monitoring.requests import recent, table, versions
from unetpp.params import Params
from unetpp.registry.promotion import CHAMPION, Registry
from unetpp.scoring.risk import OOD_ALPHA, flag_rate_bound

REPORTS = L.REPORTS / "monitor"


def champion_reference(params: Params, root: Path) -> tuple[str, list[dict[str, Any]]]:
    """The champion's version and its reference records (written by `select` into its model.pt)."""
    registry = Registry(params, root)
    version = registry.by_alias(CHAMPION)
    if version is None:
        raise UserError(f"registered model {params.promote.model_name!r} has no champion; run the retrain flow first")
    with tempfile.TemporaryDirectory() as tmp:
        meta = torch.load(registry.download(version, Path(tmp)), map_location="cpu", weights_only=True)
    if not meta.get("reference"):
        raise UserError(f"champion version {version.version} holds no reference (selected before the monitor existed)")
    return str(version.version), meta["reference"]


def flagged(current: pd.DataFrame, reference_cases: int) -> dict[str, Any]:
    """The share of the window flagged out of distribution, and whether it is more than the flag's own rate
    explains: a one-sided binomial test of the flagged count, at p < `OOD_ALPHA`, against a conservative
    rate for in-distribution inputs: what a conformal threshold on the n val (reference) cases could flag
    (`flag_rate_bound`), over the 1% the fitted bound (`unetpp.scoring.risk.ood_threshold`) aims at."""
    from scipy.stats import binomtest

    count, n = int(current["ood_score"].gt(1.0).sum()), len(current)
    rate = flag_rate_bound(reference_cases)
    p = binomtest(count, n, rate, alternative="greater").pvalue
    return {
        "flagged_share": count / n,
        "flag_rate_bound": rate,
        "ood_p_value": float(p),
        "ood_drift": bool(p < OOD_ALPHA),
    }


def check(params: Params, root: Path, log_folder: Path) -> dict[str, Any]:
    """The verdict on the champion's `monitor.window` most recent requests (no verdict under
    `monitor.min_requests`), its HTML report, logged as an MLflow run."""
    version, reference = champion_reference(params, root)
    window = recent(log_folder, version, params.monitor.window)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    verdict: dict[str, Any] = {"version": version, "requests": len(window), "reference": len(reference)}
    if len(window) < params.monitor.min_requests:
        others = versions(log_folder) - {version}
        elsewhere = f"; the log holds requests of version(s) {', '.join(sorted(others))}" if others else ""
        return verdict | {"drift": None, "reason": f"{len(window)} requests < monitor.min_requests{elsewhere}"}
    current = table(window)
    verdict |= compare(table(reference), current, root / REPORTS / f"drift-{stamp}.html")
    verdict |= flagged(current, len(reference)) | {"since": window[0]["time"], "until": window[-1]["time"]}
    verdict["drift"] = verdict["drift"] or verdict["ood_drift"]
    tracking.configure(params.tracking, root)
    with tracking.mlflow.start_run(run_name=f"monitor {stamp}", tags={"kind": "monitor", "champion": version}):
        tracking.mlflow.log_metrics(
            {k: float(verdict[k]) for k in ("data_drift_share", "embedding_drift_share", "flagged_share", "requests")}
        )
        tracking.mlflow.log_dict(verdict, "monitor/verdict.json")
        tracking.mlflow.log_artifact(verdict["report"], "monitor")
    return verdict


def export_least_confident(params: Params, root: Path, log_folder: Path, version: str) -> dict[str, Any]:
    """Copy the `monitor.export` least trustworthy kept images of the window (flagged out of distribution
    first, then the least confident) to a new folder to label, with a CSV of what the model said; nothing
    when the log keeps no images (`serve.keep_images` off)."""
    window = [r for r in recent(log_folder, version, params.monitor.window) if r["image"]]
    if not window:
        return {"exported": 0, "reason": "the request log keeps no images (serve.keep_images is false)"}

    def least(r: dict[str, Any]) -> tuple[bool, float]:
        """Flagged inputs first, the farthest first (their confidence says nothing: a blank frame's empty answer
        is certain), then the least confident class."""
        if r["out_of_distribution"]:
            return False, -float(r["ood_score"])
        return True, min(json.loads(r["confidence"] or "{}").values(), default=0.0)

    chosen = sorted(window, key=least)[: params.monitor.export]
    folder = root / REPORTS / f"to-label-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    (folder / "images").mkdir(parents=True)
    with (folder / "requests.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "time", "confidence", "ood_score", "readout"])
        for r in chosen:
            name = Path(r["image"]).name
            shutil.copy2(r["image"], folder / "images" / name)
            writer.writerow([f"images/{name}", r["time"], r["confidence"], r["ood_score"], r["readout"]])
    return {"exported": len(chosen), "folder": str(folder)}
