"""Vertical cup-to-disc ratio of the served model on generated fundus images of known ratio.

Runs the champion archive's model (newest in the model store) through the serving path in process —
PNG bytes → `decode_request` → `network_input` → pruned model → masks at the input size → `anatomical` →
`readout` — on `--count` images from a generator seed the training data does not use, and compares
the read-out ratio with the one of the generator's masks. Prints the mean and worst absolute error
and the share within ±0.05.

Usage: python bench/cdr.py [--count 100] [--seed 99] [--size 256]
"""

from __future__ import annotations

import argparse
import io
import statistics

from PIL import Image

from unetpp.data.synthetic import generate_fundus
from unetpp.params import load_params
from unetpp.runtime.forward import segment
from unetpp.runtime.geometry import Geometry, network_input
from unetpp.runtime.inference import optimize_for_inference
from unetpp.runtime.intensity import Intensity
from unetpp.runtime.payload import Limits, decode_request
from unetpp.runtime.readout import anatomical, masks_at, readout
from unetpp.serving.server import Server, load_archive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--seed", type=int, default=99)
    p.add_argument("--size", type=int, default=256)
    args = p.parse_args()
    params = load_params(args.params)
    server = Server(params)
    limits = Limits(params.serve.max_bytes, params.serve.max_pixels)
    archive = server.newest_archive()
    model, meta = load_archive(archive)
    served = optimize_for_inference(model)
    errors, missed = [], 0
    intensity = Intensity.of(meta, model.config["in_channels"])
    for i in range(args.count):
        sample = generate_fundus(i, args.size, seed=args.seed)
        buf = io.BytesIO()
        Image.fromarray(sample.image).save(buf, format="PNG")
        image = decode_request(buf.getvalue(), "image/png", limits, intensity)
        geometry = Geometry.of(meta)
        probs = segment(served, network_input(image, geometry, intensity)[None], geometry)[0]
        masks = anatomical(masks_at(probs, *image.shape[:2]), meta["class_names"])
        cdr = readout(masks, meta["class_names"])["vertical_cdr"]
        if cdr is None:
            missed += 1
            continue
        errors.append(abs(cdr - sample.cup_to_disc))
    within = sum(e <= 0.05 for e in errors)
    print(
        f"{archive.name} (L{model.config['level']} {model.config['mode']}, {meta['image_size']} px) on {args.count} "
        f"generated {args.size}x{args.size} images (seed {args.seed}): vertical CDR |error| mean "
        f"{statistics.mean(errors):.4f}, median {statistics.median(errors):.4f}, max {max(errors):.4f}; "
        f"{within}/{args.count} within ±0.05; no disc found in {missed}"
    )


if __name__ == "__main__":
    main()
