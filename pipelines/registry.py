"""Prefect flows for the registry actions (the same as `unetpp registry show | promote | rollback`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from unetpp import layout as L
from unetpp.params import load_params
from unetpp.registry.promotion import Registry


def _registry(project: str, params_file: str) -> Registry:
    root = Path(project).resolve()
    return Registry(load_params(root / params_file), root)


@flow(name="registry-show", log_prints=True)
def show(project: str = ".", params_file: str = "params.yaml") -> dict[str, Any]:
    """Aliases and versions of the registered model."""
    info = _registry(project, params_file).show()
    print(f"{info['name']}: aliases {info['aliases']}, {len(info['versions'])} version(s)")
    return info


@flow(name="registry-promote", log_prints=True)
def promote(version: str | None = None, project: str = ".", params_file: str = "params.yaml") -> dict[str, Any]:
    """Gate `version` (default: the challenger) against the champion and promote it when it passes."""
    root = Path(project).resolve()
    decision = _registry(project, params_file).gate(version, root / L.PREPARED).as_dict()
    print(f"version {decision['version']}: {'promoted' if decision['promoted'] else 'kept out'}: {decision['reason']}")
    return decision


@flow(name="registry-rollback", log_prints=True)
def rollback(project: str = ".", params_file: str = "params.yaml") -> dict[str, str]:
    """Move `champion` back to `previous`."""
    old, new = _registry(project, params_file).rollback()
    print(f"champion rolled back from version {old} to {new}")
    return {"from": old, "to": new}
