"""Scheduled flows: serve the retrain and monitor flows as deployments, each with its cron schedule.

Schedules only fire against a Prefect server (not the per-process ephemeral one):
`bash scripts/prefect-server.sh` starts one on 127.0.0.1:4200, then
`PREFECT_API_URL=http://127.0.0.1:4200/api python -m pipelines.schedule [--cron "0 3 * * 1"]
[--monitor-cron "0 * * * *"] [--push]` serves both until stopped; the crons default to `schedule.cron` and
`schedule.monitor_cron` in params.yaml; `--push` ends each retrain with `dvc push --run-cache`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from pipelines.monitor import monitor
from pipelines.retrain import retrain
from unetpp.params import load_params
from unetpp.registry.lock import ensure_promotion_limit

DEPLOYMENT = "scheduled-retrain"
MONITOR = "scheduled-monitor"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.schedule", description=__doc__)
    parser.add_argument("--cron", help="cron expression (default: schedule.cron in params.yaml)")
    parser.add_argument("--monitor-cron", help="the monitor's cron (default: schedule.monitor_cron in params.yaml)")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--name", default=DEPLOYMENT)
    parser.add_argument("--push", action="store_true", help="each retrain pushes to the default DVC remote")
    args = parser.parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        print(
            "error: PREFECT_API_URL is not set; schedules need a Prefect server: run `bash scripts/prefect-server.sh` "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api",
            file=sys.stderr,
        )
        return 2
    ensure_promotion_limit()  # the scheduled retrains promote through this server's limit
    params = load_params(args.params)
    zone = params.schedule.timezone
    parameters = {"project": str(Path.cwd()), "params_file": args.params}
    serve(
        retrain.to_deployment(
            name=args.name,
            schedules=[Cron(args.cron or params.schedule.cron, timezone=zone)],
            parameters=parameters | {"push_remote": args.push},
        ),
        monitor.to_deployment(
            name=MONITOR,
            schedules=[Cron(args.monitor_cron or params.schedule.monitor_cron, timezone=zone)],
            parameters=parameters,
        ),
        pause_on_shutdown=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
