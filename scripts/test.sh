#!/usr/bin/env bash
# Lint, then the whole test suite (set-up included). TorchServe's tests need Java 17: installed
# with apt where it is missing (CI images).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if ! command -v java >/dev/null && command -v apt-get >/dev/null; then
  sudo=$([ "$(id -u)" = 0 ] || echo sudo)
  $sudo apt-get update -qq && $sudo apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
ruff check .
pytest -q -rs "$@"  # -rs: every skip and its reason in the summary
