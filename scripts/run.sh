#!/usr/bin/env bash
# The main job on the embedded default: the retrain flow (set-up included) — every DVC stage,
# then register, gate and promote the selected model; ends with a summary.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
python -m pipelines.retrain "$@"
