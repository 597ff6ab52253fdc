#!/usr/bin/env bash
# The main job on the embedded default: reproduce the DVC pipeline (set-up included).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
dvc repro "$@"
