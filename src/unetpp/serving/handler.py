"""TorchServe handler: the registry's pruned UNet++ (or U-Net) behind HTTP.

Takes image bytes with a Content-Type (PNG, JPEG, TIFF; gray, RGB, RGBA; 8 or 16 bit) or JSON
{"image": "<base64>"}; preprocesses and segments them with the training code on the grid the model was
trained on (`unetpp.runtime.geometry`: the whole image resized, or sliding windows at the planned scale;
shipped in the archive with `unetpp.nn`); answers JSON per request — masks (RLE) at the input's size
(disc + cup: one disc, the cup inside it), areas, boxes, the vertical cup-to-disc ratio, how far to
trust it (`unetpp.runtime.guard`: per class confidence and low-confidence flag, the out-of-distribution
flag and its score), the registry name/version/level/mode and timings — or, with `Accept: image/png`, an
overlay PNG. A bad request gets its own 4xx inside a batch; the others and the worker carry on.
"""

from __future__ import annotations

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
        from unetpp.nn.checkpoint import load_checkpoint
        from unetpp.runtime.geometry import Geometry  # imports MONAI now, not on the first request
        from unetpp.runtime.inference import inference_context, optimize_for_inference
        from unetpp.runtime.payload import Limits

        cfg = (context.model_yaml_config or {}).get("handler", {})
        torch.set_num_threads(int(cfg.get("threads", torch.get_num_threads())))
        model, meta = load_checkpoint(model_dir / "model.pt")
        level, mode = model.config.get("level"), model.config.get("mode")
        want = (cfg.get("level"), cfg.get("mode"))
        if want != (level, mode):
            raise ValueError(f"model-config.yaml says level/mode {want}; model.pt holds {(level, mode)}")
        self.model = optimize_for_inference(model, channels_last=True)
        from unetpp.runtime.predict import tta_flips

        self.geometry, self.names, self.flips = Geometry.of(meta), list(meta["class_names"]), tta_flips(meta)
        from unetpp.runtime.intensity import Intensity

        self.intensity = Intensity.of(meta, int(model.config["in_channels"]))  # the plan's, as trained
        from unetpp.runtime.guard import Guard

        self.guard = Guard.of(meta)  # None for models selected before the pipeline fitted one
        self.limits = Limits(int(cfg["max_bytes"]), int(cfg["max_pixels"]))  # serve.* in params.yaml
        self.model_info = {
            "name": cfg.get("name"),
            "version": str(cfg.get("version")),
            "level": level,
            "mode": mode,
            **({"tta_flips": list(self.flips)} if self.flips else {}),
        }
        with inference_context():  # warm-up: the worker turns READY only once it answers at full speed
            for _ in range(2):
                self.model(torch.zeros(1, self.intensity.in_channels, self.geometry.size, self.geometry.size))
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        from unetpp.runtime.payload import BadRequest, decode_request
        from unetpp.runtime.predict import inspect, served_masks
        from unetpp.runtime.readout import overlay_png, readout

        start = time.perf_counter()
        answers: list[Any] = [None] * len(data)
        images: dict[int, Any] = {}
        for i, row in enumerate(data):
            body = row.get("data") if row.get("data") is not None else row.get("body")
            try:
                images[i] = decode_request(body, _header(context, i, "Content-Type"), self.limits, self.intensity)
            except BadRequest as err:
                context.set_response_status(err.status, str(err), i)
                answers[i] = {"error": str(err), "status": err.status}
        if not images:
            return answers
        decoded = time.perf_counter()
        seen = inspect(self.model, list(images.values()), self.geometry, self.intensity, self.flips)
        inferred = time.perf_counter()
        for (i, image), s in zip(images.items(), seen, strict=True):
            masks = served_masks(s.probs, *image.shape[:2], self.names)
            if (_header(context, i, "Accept") or "").startswith("image/png"):
                context.set_response_content_type(i, "image/png")
                answers[i] = overlay_png(image, masks, self.names)
                continue
            answers[i] = {
                **readout(masks, self.names),
                **(self.guard.verdict(s, self.names) if self.guard else {}),
                "model": self.model_info,
                "timings_ms": {
                    "decode": round(1e3 * (decoded - start), 3),
                    "forward": round(1e3 * (inferred - decoded), 3),  # preprocessing included
                    "total": round(1e3 * (time.perf_counter() - start), 3),
                    "batch": len(images),
                },
            }
        return answers


def _header(context: Any, idx: int, name: str) -> str | None:
    return context.get_request_header(idx, name) or context.get_request_header(idx, name.lower())
