"""Load test of the served champion: TorchServe on loopback against the raw model forward, in one run.

Sends `--requests` PNG requests at each concurrency (default 1, 4 and 8; one HTTP session per
client thread) and prints p50/p95/p99 latency, throughput and errors; the ratio of TorchServe's
p50 to the raw forward of the same pruned model (batch 1, BN folded, channels_last, in this
process while the server idles); where a request's time goes (the handler's own timings, returned in
every answer: its total and the forward inside the worker; the rest is TorchServe's frontend, its
IPC to the worker and the client); and the worker's resident memory before and after. Starts
TorchServe from the newest archive in the model store unless one already runs (and then stops it).

Also prints the throughput ratio: requests per second at the highest concurrency over the raw batch-1
forward throughput (1000 / forward ms) of the same model on the same machine (target >= 0.8). With
`--batch-size`, `--max-batch-delay-ms`, `--workers` or `--threads` the champion is re-packaged with those
`serve.*` values first (they live in the archive) and served from that archive.

Usage: python bench/serve_load.py [--requests 2000] [--concurrency 1 4 8] [--image PATH]
       [--batch-size N] [--max-batch-delay-ms MS] [--workers N] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from unetpp.data.synthetic import generate_fundus
from unetpp.params import load_params
from unetpp.runtime.geometry import Geometry, network_input
from unetpp.runtime.images import decode_image
from unetpp.runtime.inference import optimize_for_inference, run_inference
from unetpp.runtime.intensity import Intensity
from unetpp.scoring.cost import median_latency_ms
from unetpp.serving.server import Server, load_archive

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = 1.25  # TorchServe p50 / raw forward
THROUGHPUT_TARGET = 0.8  # requests/s at the highest concurrency / raw batch-1 forward throughput
OVERRIDES = ("batch_size", "max_batch_delay_ms", "workers", "threads")
CORES = torch.get_num_threads()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--image", type=Path, help="a PNG/JPEG/TIFF (default: a generated 256x256 fundus)")
    for name in OVERRIDES:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"serve.{name} for this run (re-packages)")
    return p.parse_args()


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a process from /proc, in MiB."""
    if pid is None:
        return None
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def worker_pid(server: Server) -> int | None:
    versions = server.status()["versions"]
    default = [v for v in versions if v["default"]] or versions
    return default[0]["workers"][0]["pid"]


def raw_forward_ms(server: Server, image: np.ndarray, repeats: int = 200) -> tuple[float, str]:
    """Median batch-1 forward of the served archive's model at its resolution, here in-process, on every core
    (torch's default threads): the machine's raw throughput, whatever the server's workers and threads."""
    model, meta = load_archive(server.newest_archive())
    torch.set_num_threads(CORES)
    served = optimize_for_inference(model, channels_last=True)
    x = network_input(image, Geometry.of(meta), Intensity.of(meta, model.config["in_channels"]))[None]
    ms, _ = median_latency_ms(lambda: run_inference(served, x), warmup=20, repeats=repeats)
    return ms, f"L{model.config['level']} {model.config['mode']} at {meta['image_size']} px"


def load(server: Server, body: bytes, n: int, concurrency: int) -> dict[str, float]:
    url = f"{server.inference}/predictions/{server.name}"
    headers = {"Content-Type": "application/octet-stream", "Authorization": f"Bearer {server.keys()['inference']}"}
    local = threading.local()

    def one(_: int) -> tuple[float, bool, dict[str, float]]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        resp = session.post(url, data=body, headers=headers, timeout=60)
        ms = 1e3 * (time.perf_counter() - start)
        ok = resp.status_code == 200
        return ms, ok, resp.json()["timings_ms"] if ok else {}

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(4 * concurrency)))  # warm-up: connections and the worker
        start = time.perf_counter()
        results = list(pool.map(one, range(n)))
        wall = time.perf_counter() - start
    ms = sorted(t for t, _, _ in results)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    timings = [t for _, ok, t in results if ok]
    return {
        "concurrency": concurrency,
        "requests": n,
        "errors": sum(not ok for _, ok, _ in results),
        "handler_p50_ms": statistics.median(t["total"] for t in timings) if timings else float("nan"),
        "worker_forward_p50_ms": statistics.median(t["forward"] for t in timings) if timings else float("nan"),
        "p50_ms": statistics.median(ms),
        "p95_ms": q[94],
        "p99_ms": q[98],
        "throughput_rps": n / wall,
    }


def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    overrides = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    params.serve = params.serve.model_copy(update=overrides)
    server = Server(params)
    raw = args.image.read_bytes() if args.image else None
    image = decode_image(raw) if raw else generate_fundus(0, 256, seed=123).image
    if raw is None:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        raw = buf.getvalue()
    body = raw  # a given file is sent as it is (any bit depth and channel count)

    started = server.pid() is None
    if overrides and not started:
        raise SystemExit("TorchServe already runs: stop it (`unetpp serve stop`) to serve with other settings")
    if started:
        server.start(server.package()[0] if overrides else None)
    try:
        forward, variant = raw_forward_ms(server, image)
        pid = worker_pid(server)
        before = rss_mib(pid)
        rows = [load(server, body, args.requests, c) for c in args.concurrency]
        after = rss_mib(pid)
    finally:
        if started:
            server.stop()

    table = Table(title=f"TorchServe on loopback: {variant}, {image.shape[1]}x{image.shape[0]} PNG requests")
    for col in ("concurrency", "requests", "errors", "p50 ms", "p95 ms", "p99 ms", "req/s", "p50 / raw forward"):
        table.add_column(col, justify="right")
    for r in rows:
        r["p50_over_forward"] = r["p50_ms"] / forward
        table.add_row(
            str(r["concurrency"]), str(r["requests"]), str(r["errors"]),
            f"{r['p50_ms']:.2f}", f"{r['p95_ms']:.2f}", f"{r['p99_ms']:.2f}",
            f"{r['throughput_rps']:.1f}", f"{r['p50_over_forward']:.2f}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    first = rows[0]
    console.print(
        f"raw forward (median of 200, batch 1, {CORES} threads): {forward:.2f} ms; "
        f"p50 at concurrency {first['concurrency']} / raw forward = {first['p50_over_forward']:.2f} "
        f"(target <= {TARGET}); worker RSS {before:.0f} MiB before, {after:.0f} MiB after"
    )
    console.print(
        f"where the p50 goes at concurrency {first['concurrency']}: handler {first['handler_p50_ms']:.2f} ms "
        f"(the forward in the worker {first['worker_forward_p50_ms']:.2f} ms; decoding, preprocessing and the "
        f"read-out the rest), frontend + IPC + client {first['p50_ms'] - first['handler_p50_ms']:.2f} ms"
    )
    last = rows[-1]
    ratio = last["throughput_rps"] / (1e3 / forward)
    serve = {k: getattr(server.cfg, k) for k in OVERRIDES}
    console.print(
        f"throughput at concurrency {last['concurrency']}: {last['throughput_rps']:.1f} req/s over the raw batch-1 "
        f"forward's {1e3 / forward:.1f}/s = {ratio:.2f} (target >= {THROUGHPUT_TARGET}); p50 at concurrency "
        f"{first['concurrency']} {first['p50_ms']:.2f} ms; serve {serve}"
    )
    RESULTS.mkdir(exist_ok=True)
    out = {
        "variant": variant,
        "serve": serve,
        "raw_forward_ms": forward,
        "throughput_ratio": ratio,
        "rss_mib": [before, after],
        "rows": rows,
    }
    (RESULTS / "serve_load.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
