# Sourced by the scripts: create .venv and install the project when pyproject.toml changed.
# Telemetry stays off everywhere: these machines have no network.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true \
  PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false
PYTHON=${PYTHON:-python3.11}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  # The pinned torch with pip, which reads this machine's pip configuration (where it points at a CPU build
  # on disk, that one), and uv; then the rest with uv, which keeps that torch and resolves, downloads and
  # installs in parallel: the same packages at the same versions as pip's, the whole install 88-106 s against
  # 173 s on 2 cores. Byte-compiled at install as pip does: with PYTHONDONTWRITEBYTECODE set, every process
  # would otherwise compile each module it imports from source.
  torch=$(grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
  .venv/bin/python -m pip install -q --no-deps "$torch" uv==0.13.9
  (  # uv reads no pip configuration (scripts/pip_to_uv.py), and takes the best match across the indexes as
     # pip does: uv's own default stops at the first index that holds a name
    eval "$(.venv/bin/python -m pip config list | .venv/bin/python scripts/pip_to_uv.py)"
    UV_INDEX_STRATEGY=unsafe-best-match .venv/bin/uv pip install -q --python .venv/bin/python --compile-bytecode \
      -e '.[dev]'
  )
  rm -f .venv/.installed-*
  touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
export PREFECT_HOME=${PREFECT_HOME:-$PWD/.prefect}  # Prefect's database and settings stay in the project
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false  # quiet downloads in the flow log
# Prefect's per-process server creates and migrates its database on the first run: over its 20 s default
# on a 2-core machine, where the flow then failed before any stage
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-180}
