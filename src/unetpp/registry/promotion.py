"""The model registry on MLflow aliases: register the selected model, gate it, promote, roll back.

One registered model name (`promote.model_name`) and three aliases: `challenger` (the newest
registered version), `champion` (the one served) and `previous` (the champion it replaced).
The gate scores the champion and the challenger as served (`unetpp.scoring.cases`: source
resolution, the handler's code path) on the same validation cases — today's, which neither was trained
on, since splits never move — and decides on the per-case differences of their mean Dice: promote when
the lower bound of the 95% bootstrap interval of the mean difference is at least `-promote.tolerance`
(non-inferiority: the challenger is not worse than the champion by more than the tolerance, at 95%).
Caveats a user should know: val also chose the challenger's epoch and variant, which favours it a
little on these cases; over fewer than ~10 cases the percentile interval is narrow, so read it as
indicative. Both models' test figures on the same test cases are tagged for information, never used
to decide. Every decision is written as tags on the challenger's version. Mutations hold the promotion
lock (`unetpp.registry.lock`: a Prefect global concurrency limit across hosts, a file lock on one):
two processes promoting at once are serialised, and the aliases always agree with the `replaced` tags.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from unetpp import layout as L
from unetpp import tracking
from unetpp.data.heldout import heldout_cases
from unetpp.data.prepared import MANIFEST, prepared_cases
from unetpp.errors import UserError
from unetpp.params import Params, PromoteParams
from unetpp.registry.lock import promotion_lock
from unetpp.runtime.served import ServedModel, load_served
from unetpp.scoring.cases import per_case_dice, score_cases
from unetpp.scoring.metrics import paired_difference

CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous"


class RegistryError(UserError):
    """A registry action that cannot be done (no such version, nothing to roll back to)."""


@dataclass
class Decision:
    """What the gate decided about one challenger, and why (Dice: mean over classes and val cases)."""

    version: str
    promoted: bool
    reason: str
    challenger_dice: float | None
    champion_version: str | None
    champion_dice: float | None
    data_sha256: str
    champion_after: str | None
    cases: int = 0
    difference: dict[str, Any] | None = None  # challenger - champion per case: mean, ci95, n
    test: dict[str, Any] | None = None  # both models on the same test cases: information only

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    challenger: list[float], latency_ms: float, champion: list[float] | None, policy: PromoteParams
) -> tuple[bool, str, dict[str, Any] | None]:
    """The promotion policy on per-case Dice of the same cases; returns (promote, reason, the paired
    difference challenger - champion or None without a champion)."""
    budget = policy.max_latency_ms
    mean = float(np.mean(challenger))
    if budget is not None and not latency_ms <= budget:  # a version without a measured latency fails too
        return False, f"latency {latency_ms:.2f} ms is over the budget promote.max_latency_ms={budget} ms", None
    if champion is None:
        verdict = ">=" if mean >= policy.min_dice else "<"
        reason = f"no champion yet; mean Dice {mean:.4f} {verdict} promote.min_dice {policy.min_dice}"
        return mean >= policy.min_dice, reason, None
    diff = paired_difference(challenger, champion)
    low, high = diff["ci95"]
    ok = bool(low >= -policy.tolerance)
    return (
        ok,
        (
            f"paired on {diff['n']} val cases, as served: challenger - champion mean Dice {diff['mean']:+.4f} "
            f"[95% CI {low:+.4f}, {high:+.4f}]; lower bound {'>=' if ok else '<'} -tolerance {policy.tolerance}"
        ),
        diff,
    )


class Registry:
    """The project's registered model: its versions, aliases and the promotion gate."""

    def __init__(self, params: Params, root: Path | None = None) -> None:
        self.params, self.root = params, (root or Path.cwd()).resolve()
        tracking.configure(params.tracking, self.root)
        self.client = tracking.MlflowClient()
        self.name = params.promote.model_name
        self.store = tracking.store_dir(params.tracking, self.root)

    # --- reading -------------------------------------------------------------------------
    def aliases(self) -> dict[str, str]:
        """alias -> version; {} before the first registration.

        Only "no such registered model" means no aliases: any other store error (a locked or
        unreadable database, a server down) propagates, so the gate never mistakes a store it cannot
        read for one without a champion, and changes no alias.
        """
        from mlflow.exceptions import MlflowException

        try:
            return {alias: str(v) for alias, v in self.client.get_registered_model(self.name).aliases.items()}
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise

    def by_alias(self, alias: str) -> Any | None:
        version = self.aliases().get(alias)
        return None if version is None else self.client.get_model_version(self.name, version)

    def version(self, version: str | int) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version(self.name, str(version))
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise RegistryError(f"registered model {self.name!r} has no version {version}") from None

    def versions(self) -> list[Any]:
        found = self.client.search_model_versions(f"name='{self.name}'")
        return sorted(found, key=lambda v: int(v.version))

    def show(self) -> dict[str, Any]:
        """Aliases and every version's tags: what `unetpp registry show` prints."""
        aliases = self.aliases()
        by_version: dict[str, list[str]] = {}
        for alias, v in aliases.items():
            by_version.setdefault(v, []).append(alias)
        return {
            "name": self.name,
            "aliases": aliases,
            "versions": [
                {"version": str(v.version), "aliases": sorted(by_version.get(str(v.version), [])), **v.tags}
                for v in self.versions()
            ],
        }

    # --- writing -------------------------------------------------------------------------
    def register(self, models_dir: Path) -> tuple[Any, bool]:
        """Register the selected model (once per logged model) and point `challenger` at it.

        Returns (version, created): a second call for the same selection registers nothing new.
        """
        import mlflow

        selected = json.loads((L.selected_file(models_dir)).read_text())
        run_id = tracking.read_run_id(L.run_file(models_dir))
        uri = selected.get("model_uri")
        if not uri:
            raise RegistryError(f"{models_dir / 'selected.json'} has no model_uri; run `unetpp select` first")
        with promotion_lock(self.store):
            existing = [v for v in self.versions() if v.tags.get("model_uri") == uri]
            created = not existing
            if created:
                run = self.client.get_run(run_id).data
                run_tags, metrics = run.tags, selected["metrics"]
                # the test stage's figures (held-out split, source resolution): carried, never gated on
                held_out = {k: f"{v:.4f}" for k, v in run.metrics.items() if k.startswith("test.")}
                tags = {
                    "level": selected["level"],
                    "mode": selected["mode"],
                    "arch": selected["arch"],
                    "latency_ms": f"{metrics['latency_ms']:.4f}",
                    "data_manifest_sha256": run_tags.get("data_manifest_sha256", "unknown"),
                    "git_revision": run_tags.get("git_revision", "unknown"),
                    "pipeline_run_id": run_id,
                    "model_uri": uri,
                    **{f"val.{k}": f"{v:.4f}" for k, v in metrics.items() if k.startswith("dice_") and _number(v)},
                    **held_out,
                }
                mv = mlflow.register_model(uri, self.name, tags={k: str(v) for k, v in tags.items()})
            else:
                mv = existing[-1]
            self.client.set_registered_model_alias(self.name, CHALLENGER, str(mv.version))
        return self.version(mv.version), created

    def gate(self, version: str | int | None, prepared: Path) -> Decision:
        """Score challenger and champion as served on `prepared`'s validation cases; promote when the paired
        policy allows; tag both models' figures on the test cases for information."""
        from unetpp.tracking import file_sha256

        with promotion_lock(self.store):
            started = _now()  # the lock is held from here: two gates' [started, at] never overlap
            candidate = self.by_alias(CHALLENGER) if version is None else self.version(version)
            if candidate is None:
                raise RegistryError(f"registered model {self.name!r} has no {CHALLENGER!r}; register a model first")
            champion = self.by_alias(CHAMPION)
            data_sha = file_sha256(prepared / MANIFEST)
            version, held = str(candidate.version), None if champion is None else str(champion.version)
            if held == version:
                reason = f"version {version} is already the champion"
                return Decision(version, False, reason, None, held, None, data_sha, held)
            policy = self.params.promote.model_dump_json()
            if _recorded(candidate.tags, data_sha, policy, held):
                return _recall(candidate.tags, version, held)
            models = {"challenger": self.served(candidate)} | ({} if champion is None else {
                "champion": self.served(champion)})  # fmt: skip
            val = {who: per_case_dice(self.score(m, prepared), m.names) for who, m in models.items()}
            latency = float(candidate.tags.get("latency_ms", "nan"))
            ok, reason, diff = decide(val["challenger"], latency, val.get("champion"), self.params.promote)
            test = self.test_figures(models, prepared)
            if ok:
                self._crown(version, held)
            decision = Decision(
                version,
                ok,
                reason,
                float(np.mean(val["challenger"])),
                held,
                None if champion is None else float(np.mean(val["champion"])),
                data_sha,
                version if ok else held,
                len(val["challenger"]),
                diff,
                test,
            )
            self._record(version, decision, started)
            return decision

    def rollback(self) -> tuple[str, str]:
        """Move `champion` back to `previous`; `previous` then steps one further back (or goes)."""
        with promotion_lock(self.store):
            champion, previous = self.by_alias(CHAMPION), self.by_alias(PREVIOUS)
            if champion is None or previous is None:
                raise RegistryError(
                    f"registered model {self.name!r} has no {PREVIOUS!r} champion to roll back to "
                    f"(aliases: {self.aliases() or 'none'})"
                )
            old, new = str(champion.version), str(previous.version)
            self.client.set_registered_model_alias(self.name, CHAMPION, new)
            older = previous.tags.get("replaced")
            if older:
                self.client.set_registered_model_alias(self.name, PREVIOUS, older)
            else:
                self.client.delete_registered_model_alias(self.name, PREVIOUS)
            self.client.set_model_version_tag(self.name, old, "rolled_back_to", new)
            self.client.set_model_version_tag(self.name, old, "rolled_back_at", _now())
            return old, new

    def _crown(self, version: str, old: str | None) -> None:
        """Make `version` the champion; the old one becomes `previous` and is named on the new one."""
        if old is not None:
            self.client.set_registered_model_alias(self.name, PREVIOUS, old)
            self.client.set_model_version_tag(self.name, version, "replaced", old)
        self.client.set_registered_model_alias(self.name, CHAMPION, version)

    def _record(self, version: str, decision: Decision, started: str) -> None:
        def fmt(value: float | None) -> str:
            return "none" if value is None else f"{value:.4f}"

        diff, test = decision.difference, decision.test or {}
        tags = {
            "gate.decision": "promoted" if decision.promoted else "rejected",
            "gate.reason": decision.reason,
            "gate.data_sha256": decision.data_sha256,
            "gate.cases": str(decision.cases),
            "gate.challenger_dice": fmt(decision.challenger_dice),
            "gate.champion_version": decision.champion_version or "none",
            "gate.champion_dice": fmt(decision.champion_dice),
            "gate.difference": "none" if diff is None else f"{diff['mean']:+.4f}",
            "gate.difference_ci95": "none" if diff is None else f"[{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}]",
            "gate.policy": self.params.promote.model_dump_json(),
            "gate.started": started,
            "gate.at": _now(),
        }
        tags |= {f"info.test.{k}": fmt(v) if isinstance(v, float) else str(v) for k, v in test.items()}
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, version, key, value)

    # --- models --------------------------------------------------------------------------
    def download(self, version: Any, dst: Path) -> Path:
        """The version's weights + config file (`model.pt`, loaded with weights_only) under `dst`."""
        import mlflow

        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(dst)))
        found = sorted(local.rglob("model.pt"))
        if not found:
            raise RegistryError(f"version {version.version} of {self.name!r} ({version.source}) holds no model.pt")
        return found[0]

    def served(self, version: Any) -> ServedModel:
        """A registered version, loaded as the handler serves it (CPU)."""
        with tempfile.TemporaryDirectory() as tmp:
            return load_served(self.download(version, Path(tmp)))

    def score(self, model: ServedModel, prepared: Path) -> list[dict[str, Any]]:
        """Per-case scores of a served model on `prepared`'s validation cases, at the source resolution."""
        return score_cases(model, prepared_cases(prepared, "val"), self.params.evaluate.batch_size)

    def test_figures(self, models: dict[str, ServedModel], prepared: Path) -> dict[str, Any]:
        """Each model's mean Dice on the same test cases, read from the source as the test stage reads them:
        for information in the version's tags, never used to decide."""
        try:
            cases = list(heldout_cases(self.params.data, self.params.model.class_names, prepared)[1])
        except UserError as err:  # the source no longer matches the prepared data: say so, decide anyway
            return {"unavailable": str(err)}
        out: dict[str, Any] = {"cases": len(cases)}
        for who, model in models.items():
            out[f"{who}_dice"] = float(np.mean(per_case_dice(score_cases(model, cases), model.names)))
        return out


def _recorded(tags: dict[str, str], data_sha: str, policy: str, champion: str | None) -> bool:
    """This version was already gated on these data, by this policy, against this champion: nothing to redo."""
    return (
        "gate.decision" in tags
        and tags.get("gate.data_sha256") == data_sha
        and tags.get("gate.policy") == policy
        and tags.get("gate.champion_version") == (champion or "none")
    )


def _recall(tags: dict[str, str], version: str, champion: str | None) -> Decision:
    """The decision a version's tags record (a rerun on unchanged data does not score it again)."""

    def number(key: str) -> float | None:
        return None if tags.get(key, "none") == "none" else float(tags[key])

    return Decision(
        version,
        False,
        f"already gated on these data: {tags['gate.decision']} ({tags['gate.reason']})",
        number("gate.challenger_dice"),
        champion,
        number("gate.champion_dice"),
        tags["gate.data_sha256"],
        champion,
        int(tags.get("gate.cases", "0")),
    )


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _now() -> str:
    """UTC, to the millisecond: gates that follow each other within a second stay in order."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
