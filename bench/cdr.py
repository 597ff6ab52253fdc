"""Vertical cup-to-disc ratio of the served model on generated fundus images of known ratio.

Runs the champion archive's model (newest in the model store) through the serving path in process —
PNG bytes → `decode_request` → the served model (`unetpp.runtime.served`: the archive's grid, mirroring,
masks at the input size, read-out) — on `--count` images from a generator seed the training data does not
use, and compares the read-out ratio with the one of the generator's masks. Prints the mean and worst absolute error
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
from unetpp.runtime.payload import Limits, decode_request
from unetpp.runtime.served import ServedModel
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
    served = ServedModel.of(model, meta)
    errors, missed = [], 0
    for i in range(args.count):
        sample = generate_fundus(i, args.size, seed=args.seed)
        buf = io.BytesIO()
        Image.fromarray(sample.image).save(buf, format="PNG")
        image = decode_request(buf.getvalue(), "image/png", limits, served.config.intensity)
        cdr = next(served.answers([image])).body["vertical_cdr"]
        if cdr is None:
            missed += 1
            continue
        errors.append(abs(cdr - sample.cup_to_disc))
    within = sum(e <= 0.05 for e in errors)
    print(
        f"{archive.name} (L{served.config.level} {served.config.mode}, {meta['image_size']} px) on {args.count} "
        f"generated {args.size}x{args.size} images (seed {args.seed}): vertical CDR |error| mean "
        f"{statistics.mean(errors):.4f}, median {statistics.median(errors):.4f}, max {max(errors):.4f}; "
        f"{within}/{args.count} within ±0.05; no disc found in {missed}"
    )


if __name__ == "__main__":
    main()
