"""The monitor flow: the champion's recent requests (TorchServe's request log) against its training
reference with Evidently; the HTML report and the verdict logged to MLflow. On drift: when the source holds
new labelled data (DVC sees the ingest's source changed), the retrain flow runs; otherwise the least
confident kept inputs are exported as a folder to label (only when `serve.keep_images` keeps them).

Run: `python -m pipelines.monitor` in the project folder; `python -m pipelines.schedule` serves it on
`schedule.monitor_cron` beside the retrain deployment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

from pipelines.retrain import BIN, ROOT, retrain


@task
def check(root: Path, params_file: str) -> dict[str, Any]:
    """The drift verdict on the champion's recent requests (`unetpp.monitoring.monitor.check`)."""
    from unetpp.monitoring.monitor import check as check_window
    from unetpp.params import load_params
    from unetpp.serving.server import Server

    params = load_params(root / params_file)
    return check_window(params, root, Server(params, root).requests)


@task
def new_labels(root: Path, params_file: str) -> bool:
    """Whether the source holds data the last ingest did not see: DVC's status of the ingest stage's
    source dependency (a folder of images and masks: new files are new labels)."""
    from unetpp.params import load_params

    source = (root / load_params(root / params_file).data.path).resolve()
    done = subprocess.run(
        [str(BIN / "dvc"), "status", "ingest", "--json"], cwd=root, capture_output=True, text=True, check=True
    )
    changed = [entry.get("changed deps", {}) for entry in json.loads(done.stdout or "{}").get("ingest", [])]
    return any((root / path).resolve() == source for deps in changed for path in deps)


@task
def export(root: Path, params_file: str, version: str) -> dict[str, Any]:
    """The least confident kept inputs, as a folder to label."""
    from unetpp.monitoring.monitor import export_least_confident
    from unetpp.params import load_params
    from unetpp.serving.server import Server

    params = load_params(root / params_file)
    return export_least_confident(params, root, Server(params, root).requests, version)


@flow(name="monitor")
def monitor(project: str = str(ROOT), params_file: str = "params.yaml") -> dict[str, Any]:
    """Check for drift; on drift retrain (new labels) or export what to label; return what it did."""
    root = Path(project).resolve()
    verdict = check(root, params_file)
    started: dict[str, Any] = {"action": "none"}
    if verdict["drift"]:
        if new_labels(root, params_file):
            summary = retrain(str(root), params_file)
            started = {"action": "retrain", "champion": summary["decision"].get("champion_after")}
        else:
            started = {"action": "export"} | export(root, params_file, verdict["version"])
    result = {"verdict": verdict, "started": started}
    get_run_logger().info(render(result))
    return result


def render(result: dict[str, Any]) -> str:
    """The monitor's verdict and action as plain text."""
    v, s = result["verdict"], result["started"]
    if v["drift"] is None:
        return f"monitor: champion version {v['version']}: no verdict ({v['reason']})"
    return "\n".join(
        [
            f"monitor: champion version {v['version']}, {v['requests']} requests ({v['since']} .. {v['until']}) "
            f"against {v['reference']} reference cases",
            f"  drift:    {'yes' if v['drift'] else 'no'} (data: {v['data_drift_share']:.0%} of "
            f"{v['columns']['data']} columns drifted; embedding: {v['embedding_drift_share']:.0%} of "
            f"{v['columns']['embedding']} features"
            + (f"; classifier AUC {v['embedding_classifier_auc']:.2f}" if v["embedding_classifier_auc"] else "")
            + "); "
            f"flagged out of distribution: {v['flagged_share']:.0%} (bound {v['flag_rate_bound']:.0%} without a "
            f"shift; binomial p {v['ood_p_value']:.2g}{': drift' if v['ood_drift'] else ''})",
            f"  report:   {v['report']}",
            f"  started:  {s['action']}"
            + (f" ({s.get('exported', 0)} inputs to {s['folder']})" if s.get("folder") else "")
            + (f" ({s['reason']})" if s.get("reason") else ""),
        ]
    )


if __name__ == "__main__":
    monitor()
