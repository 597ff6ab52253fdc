#!/usr/bin/env bash
# A local Prefect server for scheduled retraining (SQLite under .prefect/), bound to 127.0.0.1.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec prefect server start --host 127.0.0.1 --port "${PREFECT_PORT:-4200}"
