#!/usr/bin/env bash
# Lint, then the whole test suite (set-up included).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check .
pytest -q "$@"
