"""The data gate: a Great Expectations suite over the manifest, run by ingest and by `unetpp validate`.

Four checks, each a GX validation with failing rows identified by `id` and named by source file:
- `readable`: every source image and mask could be read (corrupt, truncated, missing mask);
- `content`: sizes and channels, binary masks with values in the class set, image and mask of
  equal size, no duplicate image within or across splits, foreground fractions within bounds
  (an empty mask fails), the cup inside the disc (fundus task), no nulls, and no sample in another
  split than the splits ledger (`splits.csv`) gave it when it was first ingested: data that grow, a
  changed seed or fraction, a file moved between split folders never move a sample silently (delete
  the ledger to re-split on purpose);
- `splits`: enough rows in train, val and test;
- `groups`: no group (`data.group_pattern`: a patient, say) in more than one split.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from unetpp.data.sources import SPLITS
from unetpp.errors import UserError
from unetpp.files import write_json
from unetpp.params import Params

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


class DataValidationError(UserError):
    """The manifest failed the gate; the message names the expectations and files."""


LEDGER_COLUMNS = ("ledger_split", "ledger_split_of_image")  # `unetpp.data.ledger.with_ledger_splits`
LEDGER_HINT = (
    "these samples were assigned another split when first ingested (splits.csv) and samples never move: "
    "restore the source or the split params (data.seed, data.*_fraction, data.group_pattern, split folders), "
    "or delete splits.csv to re-split every sample on purpose"
)

MASK_HINTS = {
    "mask_valid": "expected mask values (the manifest's mask_values): binary and per_class masks 0 and one "
    "foreground value (1, 255 or 65535); label maps the data.folder.label_values and one background value",
    "mask_background": "expected every label map to have the same background value (the value no class names)",
}


@dataclass
class GateReport:
    success: bool
    failures: list[dict[str, Any]] = field(default_factory=list)  # expectation, column, files
    results: dict[str, Any] = field(default_factory=dict)  # GX result JSON per check

    def message(self) -> str:
        lines = [f"data validation failed ({len(self.failures)} expectation(s)):"]
        for f in self.failures:
            lines.append(f"  - {f['check']}: {f['expectation']} on {f['column']}")
            lines += [f"      {name}" for name in f["files"][:20]]
            if len(f["files"]) > 20:
                lines.append(f"      ... and {len(f['files']) - 20} more")
            if f["column"] in {f"split / {c}" for c in LEDGER_COLUMNS}:
                lines.append(f"    {LEDGER_HINT}")
            if f["column"] in MASK_HINTS:
                lines.append(f"    {MASK_HINTS[f['column']]}")
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        if not self.success:
            raise DataValidationError(self.message())


def _suites(manifest: pd.DataFrame, params: Params) -> dict[str, tuple[pd.DataFrame, list[Any]]]:
    import great_expectations.expectations as gxe

    v = params.validate_
    readable = manifest[manifest["error"].isna()] if "error" in manifest else manifest
    # and diameters_*: empty for an empty mask
    optional = ("error", "cup_to_disc", "source_masks", "mask_background", *LEDGER_COLUMNS)
    derived = [c for c in manifest.columns if c not in optional and not c.startswith("diameters_")]
    content = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in derived]
    content += [
        gxe.ExpectColumnValuesToBeUnique(column="image_sha256"),
        gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        # one channel count for the whole set (the network's input): the files off the most common one are named
        gxe.ExpectColumnValuesToBeInSet(column="channels", value_set=_usual(readable["channels"])),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=v.min_side),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=v.min_side),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="width", column_B="mask_width"),
        gxe.ExpectColumnPairValuesToBeEqual(column_A="height", column_B="mask_height"),
        gxe.ExpectColumnValuesToBeInSet(column="mask_valid", value_set=[True]),
    ]
    backgrounds = readable["mask_background"].dropna() if "mask_background" in readable else pd.Series()
    if len(backgrounds):  # label maps: one background value for the whole set, the files off it named
        content.append(gxe.ExpectColumnValuesToBeInSet(column="mask_background", value_set=_usual(backgrounds)))
    content += [
        gxe.ExpectColumnValuesToBeBetween(column=f"fg_{c}", min_value=v.fg_min, max_value=v.fg_max, strict_min=True)
        for c in params.model.class_names
    ]
    if params.fundus:
        content.append(gxe.ExpectColumnValuesToBeBetween(column="cup_outside_disc", max_value=v.max_cup_outside_disc))
    content += [  # samples (by id, and by their image's bytes) the ledger already holds keep its split
        gxe.ExpectColumnPairValuesToBeEqual(column_A="split", column_B=column, ignore_row_if="either_value_is_missing")
        for column in LEDGER_COLUMNS
        if column in manifest
    ]
    counts = manifest["split"].value_counts() if len(manifest) else pd.Series(dtype=int)
    minimum = {"train": v.min_train, "val": v.min_val, "test": v.min_test}
    splits = pd.DataFrame(
        {"id": list(SPLITS), "rows": [int(counts.get(s, 0)) for s in SPLITS], "min_rows": [minimum[s] for s in SPLITS]}
    )
    spans = manifest.groupby("group")["split"].agg(lambda s: sorted(set(s))) if len(manifest) else pd.Series()
    groups = pd.DataFrame(
        {"id": [f"group {g!r} in {' and '.join(v)}" for g, v in spans.items()], "splits": [len(v) for v in spans]}
    )
    return {
        "readable": (manifest, [gxe.ExpectColumnValuesToBeNull(column="error")]),
        "content": (readable, content),
        "splits": (
            splits,
            [gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="rows", column_B="min_rows", or_equal=True)],
        ),
        "groups": (groups, [gxe.ExpectColumnValuesToBeInSet(column="splits", value_set=[1])]),
    }


def _usual(values: pd.Series) -> list[int]:
    """The most common value (the smallest of equally common ones), as a one-element set."""
    return [int(values.mode().min())] if len(values) else []


def _describe(row: dict[str, Any]) -> str:
    """The source file of a manifest row, with its read error when there is one."""
    error = row.get("error")
    return str(error) if isinstance(error, str) and error else f"{row['source_image']} (id {row['id']})"


def validate_manifest(manifest: pd.DataFrame, params: Params, docs_dir: Path | None = None) -> GateReport:
    """Run the gate; with `docs_dir`, also build GX Data Docs (HTML) there."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="unetpp-gx-"))
    try:
        ctx = gx.get_context(mode="file", project_root_dir=str(root)) if docs_dir else gx.get_context(mode="ephemeral")
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = ctx.data_sources.add_pandas("manifest")
        report = GateReport(success=True)
        sources = {str(r["id"]): _describe(r) for r in manifest.to_dict("records")}
        definitions = []
        for name, (frame, expectations) in _suites(manifest, params).items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
            suite = ctx.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
            definition = ctx.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=suite, name=name))
            definitions.append((definition, frame))
            result = definition.run(
                batch_parameters={"dataframe": frame},
                result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["id"]},
            )
            if docs_dir:  # the validate stage's report; ingest needs only the failures
                report.results[name] = result.to_json_dict()
            for r in result.results:
                if r.success:
                    continue
                cfg = r.expectation_config
                ids = [row["id"] for row in (r.result or {}).get("unexpected_index_list") or []]
                column = cfg.kwargs.get("column") or f"{cfg.kwargs.get('column_A')} / {cfg.kwargs.get('column_B')}"
                files = [sources.get(str(i), str(i) if str(i).startswith("group ") else f"split {i}") for i in ids]
                report.failures.append(dict(check=name, expectation=cfg.type, column=column, files=files))
        report.success = not report.failures
        if docs_dir:
            _build_docs(ctx, definitions, root, docs_dir)
        return report
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build_docs(ctx: Any, definitions: list[tuple[Any, pd.DataFrame]], root: Path, docs_dir: Path) -> None:
    """Run the validations through a checkpoint that renders Data Docs, then copy the site out."""
    import great_expectations as gx

    for definition, frame in definitions:
        checkpoint = ctx.checkpoints.add(
            gx.Checkpoint(
                name=f"docs-{definition.name}",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="docs")],
            )
        )
        checkpoint.run(batch_parameters={"dataframe": frame})
    site = next(root.rglob("local_site"), None)
    if site is None:
        raise RuntimeError(f"Great Expectations wrote no Data Docs under {root}")
    shutil.rmtree(docs_dir, ignore_errors=True)
    shutil.copytree(site, docs_dir)


def write_report(report: GateReport, path: Path) -> None:
    """reports/validation.json: success, the failures by file, and GX's full results."""
    write_json(path, dict(success=report.success, failures=report.failures, results=report.results), default=str)
