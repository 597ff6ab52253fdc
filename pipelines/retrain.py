"""The retrain flow: each DVC stage as a Prefect task, then register -> gate -> promote -> package.

`package` builds the champion's TorchServe archive and, when a server runs, hot-swaps it in.

Stages are reproduced through `dvc repro --single-item`, so unchanged ones are skipped and DVC's
lock file stays the record of what ran. A stage that fails for a reason that may pass (a killed
process, a busy file) is retried; one whose command rejected its input (exit 2, `unetpp.errors`) is
not. The flow compares the command's own exit code (DVC exits 255 whatever it was), which `unetpp`
writes to the file named by $UNETPP_EXIT_FILE.

With `push`, a successful run ends with `dvc push --run-cache` to the project's default DVC remote:
the prepared data, the models and the run cache, so that a colleague's clone that runs `dvc pull` has
every stage up to date and trains nothing.

Run: `python -m pipelines.retrain [--push]` in the project folder (what `bash scripts/run.sh` does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from unetpp import layout as L
from unetpp.errors import EXIT_FAILURE, EXIT_FILE_ENV, UserError

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


class StageFailed(RuntimeError):
    """A DVC stage exited non-zero: `code` is its command's exit code (`unetpp.errors`), or 1 when the
    command left none (DVC failed before or around it); carries the tail of its log."""

    def __init__(self, stage: str, code: int, tail: list[str]) -> None:
        self.stage, self.code = stage, code
        self.transient = code == EXIT_FAILURE  # 2 (bad input) and 3 (did not learn) would fail again
        super().__init__(f"stage {stage!r} failed (command exit {code}):\n" + "\n".join(tail))


def command_exit_code(exit_file: Path) -> int:
    """The code `unetpp` wrote on failure; 1 (may pass on a retry) when it wrote none."""
    try:
        return int(json.loads(exit_file.read_text())["code"])
    except (OSError, ValueError, KeyError, TypeError):
        return EXIT_FAILURE


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the input was wrong: a stage whose command exited 2, or a `UserError` in a task."""
    try:
        state.result()
    except StageFailed as err:
        return err.transient
    except UserError:
        return False
    except Exception:
        return True
    return False


RETRIED = dict(retries=2, retry_delay_seconds=5, retry_condition_fn=_retry_transient)


def stage_names(project: Path) -> list[str]:
    """The stages of dvc.yaml in their written (dependency) order."""
    return list(yaml.safe_load((project / "dvc.yaml").read_text())["stages"])


def dvc_env() -> dict[str, str]:
    """The environment DVC runs in: this interpreter's tools first on PATH, no analytics."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1"}


@task(**RETRIED, task_run_name="dvc-{stage}")
def reproduce(stage: str, project: Path) -> str:
    """`dvc repro --single-item STAGE`, its log streamed line by line; returns 'ran' or 'skipped'."""
    logger = get_run_logger()
    exit_file = Path(tempfile.mkdtemp(prefix="unetpp-exit-")) / "exit.json"
    env = {**dvc_env(), EXIT_FILE_ENV: str(exit_file)}
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro", "--single-item", stage],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for raw in proc.stdout:
        line = raw.rstrip()
        if line:
            logger.info("[%s] %s", stage, line)
            lines.append(line)
    if proc.wait():
        code = command_exit_code(exit_file)
        shutil.rmtree(exit_file.parent, ignore_errors=True)
        raise StageFailed(stage, code, lines[-25:])
    shutil.rmtree(exit_file.parent, ignore_errors=True)
    return "ran" if any(f"Running stage '{stage}'" in line for line in lines) else "skipped"


@task(retries=0)
def preflight(project: Path, params_file: str) -> None:
    """Refuse wrong params or a missing source before DVC runs anything (bad input: never retried)."""
    from unetpp.data.sources import check_source
    from unetpp.params import load_params

    params = load_params(project / params_file)
    with contextlib.chdir(project):  # a relative data.path is the project's, as DVC reads it
        check_source(params.data)


@task(**RETRIED)
def register(project: Path, params_file: str) -> dict[str, Any]:
    """Register the selected model (no duplicate for an unchanged selection); alias `challenger`."""
    from unetpp.params import load_params
    from unetpp.registry.lock import describe
    from unetpp.registry.promotion import Registry

    registry = Registry(load_params(project / params_file), project)
    get_run_logger().info("register: taking the promotion lock (%s)", describe(registry.store))
    version, created = registry.register(project / L.MODELS)
    return {"name": registry.name, "version": str(version.version), "created": created}


@task(**RETRIED)
def gate(project: Path, params_file: str, version: str) -> dict[str, Any]:
    """Re-score challenger and champion on the same validation data; promote when the policy allows."""
    from unetpp.params import load_params
    from unetpp.registry.lock import describe
    from unetpp.registry.promotion import Registry

    registry = Registry(load_params(project / params_file), project)
    get_run_logger().info("gate: taking the promotion lock (%s)", describe(registry.store))
    return registry.gate(version, project / L.PREPARED).as_dict()


@task(**RETRIED)
def package(project: Path, params_file: str, champion: str | None) -> dict[str, Any]:
    """Build the champion's TorchServe archive (once per version); hot-swap it into a running server."""
    from unetpp.params import load_params
    from unetpp.serving.server import Server

    if champion is None:
        return {"archive": None, "action": "no champion to package"}
    server = Server(load_params(project / params_file), project)
    mar = server.archive_path(champion)
    action = "already packaged" if mar.is_file() else "packaged"
    if not mar.is_file():
        mar, _ = server.package(champion)
    if server.pid() is None:
        return {"archive": str(mar), "action": f"{action}; TorchServe not running (`unetpp serve start`)"}
    default = [v["version"] for v in server.status()["versions"] if v["default"]]
    if default != [champion]:
        server.swap(mar, champion)
        action += f"; swapped into the running TorchServe (was version {default[0] if default else 'none'})"
    return {"archive": str(mar), "action": action + f"; TorchServe serves version {champion}"}


@task(**RETRIED)
def push(project: Path) -> str:
    """`dvc push --run-cache` to the default remote; a missing remote is bad input (never retried)."""
    dvc = str(BIN / "dvc")
    remote = subprocess.run([dvc, "remote", "default"], cwd=project, env=dvc_env(), capture_output=True, text=True)
    if remote.returncode or not remote.stdout.strip():
        raise UserError(
            f"push asked for, but {project} has no default DVC remote: add one with "
            "`dvc remote add -d team <url>` (a folder, s3://, ssh://, ...) and commit .dvc/config"
        )
    done = subprocess.run([dvc, "push", "--run-cache"], cwd=project, env=dvc_env(), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"dvc push failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    last = (done.stdout.strip().splitlines() or ["nothing to push"])[-1]
    return f"{remote.stdout.strip()}: {last}"


def _publish(project: Path, decision: dict[str, Any]) -> None:
    """Prefect artifacts: validation summary, metrics per level, the selection, the promotion decision."""
    validation = json.loads((project / L.REPORTS / "validation.json").read_text())
    results = validation["results"].items()
    checks = "\n".join(f"| {name} | {'pass' if r['success'] else 'FAIL'} |" for name, r in results)
    create_markdown_artifact(
        key="validation", markdown=f"# Data validation\n\n| check | result |\n|---|---|\n{checks}\n",
        description="Great Expectations gate over the prepared data",
    )  # fmt: skip
    rows = json.loads((project / L.METRICS / "eval.json").read_text()).values()
    keep = ("key", "dice_mean", "dice_disc", "dice_cup", "iou_mean", "latency_ms", "gflops", "parameters")
    table = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k in keep} for r in rows]
    create_table_artifact(key="metrics-per-level", table=table, description="every pruning level x mode")
    selected = json.loads((project / L.SELECTED).read_text())
    create_markdown_artifact(
        key="selection", markdown=f"# Selected L{selected['level']} {selected['mode']}\n\n{selected['reason']}\n"
    )
    verdict = "promoted" if decision["promoted"] else "not promoted"
    create_markdown_artifact(
        key="promotion",
        markdown=f"# Version {decision['version']}: {verdict}\n\n{decision['reason']}\n\n"
        f"champion now: version {decision['champion_after']}\n",
    )


@flow(name="retrain")
def retrain(project: str = str(ROOT), params_file: str = "params.yaml", push_remote: bool = False) -> dict[str, Any]:
    """Reproduce the pipeline, register the selection, gate and promote it (then push to the DVC remote
    when `push_remote`); return the summary."""
    from unetpp.data.ingest import read_record

    root = Path(project).resolve()
    preflight(root, params_file)
    stages = {stage: reproduce(stage, root) for stage in stage_names(root)}
    data = read_record(root / L.PREPARED) if stages.get("ingest") == "ran" else None
    registered = register(root, params_file)
    decision = gate(root, params_file, registered["version"])
    packaged = package(root, params_file, decision["champion_after"])
    _publish(root, decision)
    pushed = push(root) if push_remote else None
    selected = json.loads((root / L.SELECTED).read_text())
    test = json.loads((root / L.METRICS / "test.json").read_text())
    summary = {
        "stages": stages,
        "data": None if data is None else {k: data[k] for k in ("samples", "new", "changed", "reused", "removed")},
        "selected": {k: selected[k] for k in ("level", "mode", "reason")},
        "metrics": {
            k: v
            for k, v in selected["metrics"].items()
            if (k.startswith("dice_") or k == "latency_ms") and isinstance(v, int | float)
        },
        "test": {k: v for k, v in test.items() if k.startswith("dice_") and v.get("mean") is not None},
        "registered": registered,
        "decision": decision,
        "package": packaged,
        "pushed": pushed,
    }
    get_run_logger().info(render(summary))
    return summary


def _data_line(data: dict[str, Any] | None) -> str:
    """What this run's ingest found, per split; or that the source had not changed."""
    if data is None:
        return "source unchanged since the last run (ingest skipped)"

    def per_split(counts: dict[str, int]) -> str:
        return f"{sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})" if counts else "0"

    return (
        f"{data['samples']} samples: new {per_split(data['new'])}, changed {per_split(data['changed'])}, "
        f"reused {sum(data['reused'].values())}, no longer in the source {len(data['removed'])}"
    )


def _test_line(test: dict[str, Any]) -> str:
    """Both models' mean Dice on the same test cases, as the gate tagged them (never used to decide)."""
    if "unavailable" in test:
        return f"test figures unavailable: {test['unavailable']}"
    scores = ", ".join(f"{who.removesuffix('_dice')} {v:.4f}" for who, v in test.items() if who.endswith("_dice"))
    return f"mean Dice on the same {test['cases']} test cases: {scores} (not used to decide)"


def render(summary: dict[str, Any]) -> str:
    """The end-of-run summary as plain text."""
    ran = [name for name, state in summary["stages"].items() if state == "ran"]
    stages = ", ".join(ran) + " ran" if ran else "none ran: nothing changed"
    metrics = " ".join(f"val {k} {v:.4f}" for k, v in summary["metrics"].items())
    test = " ".join(f"{k} {v['mean']:.4f} [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]" for k, v in summary["test"].items())
    reg, dec, sel = summary["registered"], summary["decision"], summary["selected"]
    fresh = "new" if reg["created"] else "already registered: no new version"
    return "\n".join(
        [
            "retrain summary",
            f"  data:      {_data_line(summary['data'])}",
            f"  stages:    {stages}",
            f"  selected:  L{sel['level']} {sel['mode']} ({metrics})",
            f"  test:      {test} (held-out split, source resolution, as served; report: reports/report.md)",
            f"  registry:  {reg['name']} version {reg['version']} ({fresh})",
            f"  promotion: {'promoted' if dec['promoted'] else 'not promoted'}: {dec['reason']}",
            *([f"  for info:  {_test_line(dec['test'])}"] if dec.get("test") else []),
            f"  champion:  version {dec['champion_after']}",
            f"  serving:   {summary['package']['archive']} ({summary['package']['action']})",
            *([f"  remote:    {summary['pushed']}"] if summary.get("pushed") else []),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.retrain", description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--push", action="store_true", help="dvc push --run-cache to the default remote at the end")
    args = parser.parse_args(argv)
    print(render(retrain(project=str(Path.cwd()), params_file=args.params, push_remote=args.push)))


if __name__ == "__main__":
    main()
