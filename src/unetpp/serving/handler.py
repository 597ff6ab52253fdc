"""TorchServe handler: the registry's pruned UNet++ (or U-Net) behind HTTP.

Takes image bytes with a Content-Type (PNG, JPEG, TIFF; gray, RGB, RGBA; 8 or 16 bit) or JSON
{"image": "<base64>"}; segments them with the served model (`unetpp.runtime.served.load_served`, the one
loader the registry gate and the `test` stage use: the grid the model was trained on, its mirroring and
guard; shipped in the archive with `unetpp.nn`); answers JSON per request — masks (RLE) at the input's size
(disc + cup: one disc, the cup inside it), areas, boxes, the vertical cup-to-disc ratio, how far to
trust it (`unetpp.runtime.guard`: per class confidence and low-confidence flag, the out-of-distribution
flag and its score), the registry name/version/level/mode and timings — or, with `Accept: image/png`, an
overlay PNG. A bad request gets its own 4xx inside a batch; the others and the worker carry on.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler


class SegmentationHandler(BaseHandler):
    """Loads `model.pt` (weights + config, weights_only) and serves it in batches."""

    def initialize(self, context: Any) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        sys.path.insert(0, str(model_dir))  # the archive's minimal `unetpp` package comes first
        from unetpp.runtime.payload import Limits
        from unetpp.runtime.requestlog import ENV, RequestLog
        from unetpp.runtime.served import load_served  # imports MONAI now, not on the first request

        cfg = (context.model_yaml_config or {}).get("handler", {})
        torch.set_num_threads(int(cfg.get("threads", torch.get_num_threads())))
        self.served = load_served(model_dir / "model.pt")
        self.limits = Limits(int(cfg["max_bytes"]), int(cfg["max_pixels"]))  # serve.* in params.yaml
        folder = os.environ.get(ENV)  # set by `unetpp serve start`; a TorchServe started by hand logs nothing
        self.log = RequestLog(Path(folder), bool(cfg.get("keep_images"))) if folder else None
        self.model_info = {"name": cfg.get("name"), "version": str(cfg.get("version"))} | self.served.describe()
        self.served.warm_up()  # the worker turns READY only once it answers at full speed
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        from unetpp.runtime.payload import BadRequest, decode_body, request_bytes
        from unetpp.runtime.readout import overlay_png

        start = time.perf_counter()
        answers: list[Any] = [None] * len(data)
        images: dict[int, Any] = {}
        bodies: dict[int, bytes] = {}
        names, intensity = self.served.names, self.served.config.intensity
        for i, row in enumerate(data):
            body = row.get("data") if row.get("data") is not None else row.get("body")
            try:
                bodies[i] = request_bytes(body, _header(context, i, "Content-Type"), self.limits)
                images[i] = decode_body(bodies[i], self.limits, intensity)
            except BadRequest as err:
                context.set_response_status(err.status, str(err), i)
                answers[i] = {"error": str(err), "status": err.status}
        if not images:
            return answers
        decoded = time.perf_counter()
        seen = self.served.inspect(list(images.values()))
        inferred = time.perf_counter()
        records = []
        for (i, image), s in zip(images.items(), seen, strict=True):
            got = self.served.answer(image, s)
            answer = got.body
            if self.log is not None:
                records.append(self.log.record(self.model_info["version"], image, got.seen.features, answer, bodies[i]))
            _count(context.metrics, answer)
            if (_header(context, i, "Accept") or "").startswith("image/png"):
                context.set_response_content_type(i, "image/png")
                answers[i] = overlay_png(image, got.masks, names)
                continue
            answers[i] = answer | {
                "model": self.model_info,
                "timings_ms": {
                    "decode": round(1e3 * (decoded - start), 3),
                    "forward": round(1e3 * (inferred - decoded), 3),  # preprocessing included
                    "total": round(1e3 * (time.perf_counter() - start), 3),
                    "batch": len(images),
                },
            }
        answered = time.perf_counter()
        if self.log is not None:
            try:
                self.log.append(records)
            except sqlite3.Error as err:  # the answers stand: a log that cannot be written loses these records
                logging.getLogger(__name__).error("request log: %d records lost: %s", len(records), err)
        _time(
            context.metrics,
            {
                "decode": decoded - start,
                "forward": inferred - decoded,
                "answer": answered - inferred,
                "log": time.perf_counter() - answered,
            },
        )
        return answers


def _count(metrics: Any, answer: dict[str, Any]) -> None:
    """Prometheus (serving/metrics.yaml): the answer under its flag, and per class its predicted risk."""
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    flag = "unguarded"
    if "out_of_distribution" in answer:
        ood, low = answer["out_of_distribution"], any(answer["low_confidence"].values())
        flag = "out_of_distribution" if ood else "low_confidence" if low else "ok"
    metrics.add_metric("Answers", 1, "count", dimensions=[Dimension("Flag", flag)])
    for c, v in answer.get("confidence", {}).items():
        metrics.add_metric(
            "PredictedRisk", 1 - v, "ratio", dimensions=[Dimension("Class", c)], metric_type=MetricTypes.HISTOGRAM
        )


def _time(metrics: Any, stages: dict[str, float]) -> None:
    """Prometheus: each stage's seconds for the batch (decode, forward, answer, log)."""
    from ts.metrics.dimension import Dimension
    from ts.metrics.metric_type_enum import MetricTypes

    for stage, seconds in stages.items():
        metrics.add_metric(
            "StageSeconds",
            seconds,
            "seconds",
            dimensions=[Dimension("Stage", stage)],
            metric_type=MetricTypes.HISTOGRAM,
        )


def _header(context: Any, idx: int, name: str) -> str | None:
    return context.get_request_header(idx, name) or context.get_request_header(idx, name.lower())
