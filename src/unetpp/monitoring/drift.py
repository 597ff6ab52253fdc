"""Drift: the served requests' recent window against the champion's reference, with Evidently.

Two verdicts, each Evidently's dataset-drift rule (a share of columns drifted, by its default per-column
test: Kolmogorov-Smirnov at p < 0.05 for numbers under 1,000 rows), reached when at least `DRIFT_SHARE` of
the columns drifted:

- **data**: the inputs' size and per-channel intensity statistics, and what the model answered: the
  out-of-distribution score, the confidence and the area fraction of each class;
- **embedding**: the pooled bottleneck features and the input's descriptors, column by column (the
  out-of-distribution flag reads the same vector). Evidently's own embedding test (a classifier told to
  separate the two sets; its ROC AUC) is in the report beside them, for reading: its verdict is
  random-bootstrapped below 1,000 reference rows, so it is not the one that decides (and it is left out
  where both sets together hold `TSNE_ROWS` rows or fewer: its plot cannot be drawn).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from unetpp.monitoring.requests import FEATURE

DRIFT_SHARE = 0.5  # Evidently's default dataset-drift share
TSNE_ROWS = 31  # Evidently draws the embedding classifier's t-SNE (perplexity 30): it needs more rows than that


def compare(reference: pd.DataFrame, current: pd.DataFrame, html: Path) -> dict[str, Any]:
    """Evidently's drift report of `current` against `reference` (written to `html`) and its two verdicts."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, EmbeddingsDrift
    from evidently.presets import DataDriftPreset

    features = [c for c in reference if c.startswith(FEATURE)]
    scalars = [c for c in reference if c not in features and c in current and reference[c].notna().any()]
    definition = DataDefinition(numerical_columns=scalars + features, embeddings={"features": features})
    classifier = len(reference) + len(current) > TSNE_ROWS
    report = Report(
        [
            DataDriftPreset(columns=scalars, drift_share=DRIFT_SHARE),
            DriftedColumnsCount(columns=features, drift_share=DRIFT_SHARE),
            *([EmbeddingsDrift(embeddings_name="features")] if classifier else []),
        ]
    )
    with warnings.catch_warnings():  # constant columns (one image size) make scipy warn; their test says no drift
        warnings.simplefilter("ignore")
        result = report.run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
    html.parent.mkdir(parents=True, exist_ok=True)
    result.save_html(str(html))
    values = [m["value"] for m in result.dict()["metrics"]]
    counted = [v for v in values if isinstance(v, dict) and "share" in v]
    data, embedding = counted[0]["share"], counted[1]["share"]
    return {
        "data_drift_share": float(data),
        "embedding_drift_share": float(embedding),
        "embedding_classifier_auc": float(values[-1]) if classifier else None,
        "data_drift": bool(data >= DRIFT_SHARE),
        "embedding_drift": bool(embedding >= DRIFT_SHARE),
        "drift": bool(data >= DRIFT_SHARE or embedding >= DRIFT_SHARE),
        "columns": {"data": len(scalars), "embedding": len(features)},
        "report": str(html),
    }
