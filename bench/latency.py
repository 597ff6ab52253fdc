"""Latency of every UNet++ pruning level and mode against MONAI's BasicUNetPlusPlus, in one run.

All variants are timed interleaved (one call of each per round, the order rotating every round), so
drift in machine load touches them alike; medians are reported. Printed ratios: ours / MONAI at the
same mode, and Lk / L4 of ours; beside each variant, the served pass with its guard (every held
head, probes included, and the pooled bottleneck features: `guard_outputs`). MONAI computes all 15
nodes whatever head is asked for, so its cost is the same at every level: it is timed once per mode
(its L4 heads), which leaves more rounds. GFLOP/s (`unetpp.scoring.cost.count_flops`) sit next to a
3x3-convolution peak measured in the same run.

Usage: python bench/latency.py [--size 256] [--threads 2] [--repeats 7] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.networks.nets import BasicUNetPlusPlus
from rich.console import Console
from rich.table import Table

from unetpp.data.synthetic import generate_fundus
from unetpp.nn.networks import LEVELS, MODES, UNetPlusPlus
from unetpp.runtime.geometry import Geometry, network_input
from unetpp.runtime.inference import inference_context, optimize_for_inference, run_inference
from unetpp.runtime.intensity import RGB
from unetpp.scoring.cost import count_flops
from unetpp.scoring.metrics import SegmentationMetrics
from unetpp.training.losses import DeepSupervisionLoss

TARGETS = {"L3/L4": 0.62, "L2/L4": 0.33, "L1/L4": 0.14, "L4/MONAI fp32": 0.70, "L4/MONAI bf16": 0.40}


def guard_pass(module: torch.nn.Module, x: torch.Tensor) -> object:
    """What the served handler runs: every held head's probabilities and the pooled bottleneck features."""
    with inference_context():
        return module.guard_outputs(x)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--widths", type=int, nargs=5, default=[32, 64, 128, 256, 512])
    p.add_argument("--train-steps", type=int, default=60, help="steps on a phantom, for meaningful masks")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--out", default="bench/results/latency.json")
    return p.parse_args()


def trained_model(widths: list[int], size: int, steps: int) -> UNetPlusPlus:
    """Our UNet++ fitted briefly to generated fundus images, so that masks (and the bf16 Dice check) mean
    something. Fitted at half the benchmark's side (4x cheaper; the network is fully convolutional).
    """
    model = UNetPlusPlus(widths=widths, norm="batch", upsample="transpose", in_channels=3, num_classes=2)
    x, y = fundus_batch(max(32, size // 2), range(3))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = DeepSupervisionLoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return model.eval()


def fundus_batch(size: int, indices: range) -> tuple[torch.Tensor, torch.Tensor]:
    """Generated fundus photographs (the embedded data's generator, its own seed) as input and masks."""
    samples = [generate_fundus(i, size, seed=7) for i in indices]
    x = torch.stack([network_input(s.image, Geometry("whole", size), RGB) for s in samples])
    return x, torch.stack([torch.from_numpy(s.masks).float() for s in samples])


def monai_head(net: BasicUNetPlusPlus, level: int, mode: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """MONAI's answer at a level and mode: it computes every node, then we take the heads."""

    def run(x: torch.Tensor) -> torch.Tensor:
        heads = net(x)[:level] if mode == "accurate" else [net(x)[level - 1]]
        return torch.stack([torch.sigmoid(h) for h in heads]).mean(0)

    return run


def timed_rounds(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median ms per variant over `repeats` interleaved rounds (order rotated each round)."""
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            variants[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    size, console = args.size, Console(width=170)
    console.print(f"threads {torch.get_num_threads()}, torch {torch.__version__}, input 1x3x{size}x{size}")

    model = trained_model(args.widths, size, args.train_steps)
    x = fundus_batch(size, range(3, 4))[0]
    x_cl = x.contiguous(memory_format=torch.channels_last)
    monai = BasicUNetPlusPlus(
        spatial_dims=2, in_channels=3, out_channels=2, features=(*args.widths, args.widths[0]), deep_supervision=True
    ).eval()

    variants: dict[str, Callable[[], object]] = {}
    flops: dict[str, int] = {}
    compile_s: dict[str, float] = {}
    shape = (1, 3, size, size)
    for level in LEVELS:
        for mode in MODES:
            key = f"L{level} {mode}"
            pruned = model.prune(level, mode)
            flops[key] = count_flops(pruned, shape)
            eager = optimize_for_inference(model.prune(level, mode))
            variants[f"ours {key}"] = lambda m=eager: run_inference(m, x_cl)
            guarded = optimize_for_inference(model.prune(level, mode, probes=True))
            variants[f"guarded {key}"] = lambda m=guarded: guard_pass(m, x_cl)
            if not args.no_compile:
                compiled = optimize_for_inference(model.prune(level, mode), compile=True)
                start = time.perf_counter()
                run_inference(compiled, x_cl)
                compile_s[key] = time.perf_counter() - start
                variants[f"compiled {key}"] = lambda m=compiled: run_inference(m, x_cl)
    for mode in MODES:
        head = monai_head(monai, 4, mode)
        variants[f"monai {mode}"] = lambda h=head: run_inference(h, x, channels_last=False)
    l4 = optimize_for_inference(model.prune(4, "accurate"))
    variants["ours L4 accurate bf16"] = lambda: run_inference(l4, x_cl, bf16=True)
    with torch.inference_mode():
        monai_flops = count_flops(monai, shape)

    convs = {
        f"conv3x3 {c}ch {s}px": (torch.nn.Conv2d(c, c, 3, padding=1).eval().to(memory_format=torch.channels_last), s)
        for c, s in ((64, 128), (128, 64), (256, 32))
    }
    for name, (conv, s) in convs.items():
        inp = torch.randn(1, conv.in_channels, s, s).contiguous(memory_format=torch.channels_last)
        flops[name] = count_flops(conv, inp.shape)
        variants[name] = lambda c=conv, i=inp: run_inference(c, i)

    for fn in variants.values():  # warm-up: allocator, oneDNN primitive caches
        fn()
    ms = timed_rounds(variants, args.repeats)

    peak = max(flops[n] / ms[n] / 1e6 for n in convs)
    table = Table(title=f"latency at {size}x{size}, batch 1, {args.threads} threads (median of {args.repeats})")
    cols = ["level", "mode", "GFLOPs", "ours ms", "with guard ms", "GFLOP/s", "% peak", "ours/MONAI", "Lk/L4"]
    if not args.no_compile:
        cols += ["compiled ms", "compiled/MONAI", "compiled Lk/L4"]
    cols += ["MONAI ms"]
    for c in cols:
        table.add_column(c, justify="right")
    rows = []
    for level in LEVELS:
        for mode in MODES:
            key = f"L{level} {mode}"
            ours, mon = ms[f"ours {key}"], ms[f"monai {mode}"]
            row = dict(
                level=level,
                mode=mode,
                gflops=flops[key] / 1e9,
                ours_ms=ours,
                gflop_per_s=flops[key] / ours / 1e6,
                monai_ms=mon,
                ours_over_monai=ours / mon,
                over_l4=ours / ms[f"ours L4 {mode}"],
                guarded_ms=ms[f"guarded {key}"],
            )
            cells = [f"L{level}", mode, f"{row['gflops']:.2f}", f"{ours:.1f}", f"{row['guarded_ms']:.1f}"]
            cells += [f"{row['gflop_per_s']:.0f}"]
            cells += [f"{100 * row['gflop_per_s'] / peak:.0f}%", f"{row['ours_over_monai']:.2f}"]
            cells += [f"{row['over_l4']:.2f}"]
            if not args.no_compile:
                comp = ms[f"compiled {key}"]
                row.update(
                    compiled_ms=comp,
                    compiled_over_monai=comp / mon,
                    compiled_over_l4=comp / ms[f"compiled L4 {mode}"],
                    compile_s=compile_s[key],
                )
                cells += [f"{comp:.1f}", f"{row['compiled_over_monai']:.2f}", f"{row['compiled_over_l4']:.2f}"]
            cells += [f"{mon:.1f}"]
            rows.append(row)
            table.add_row(*cells)
    console.print(table)

    monai_gflops = monai_flops / 1e9
    console.print(
        f"3x3-conv peak in this run: {peak:.0f} GFLOP/s ("
        + ", ".join(f"{n}: {flops[n] / ms[n] / 1e6:.0f}" for n in convs)
        + f"); MONAI full forward {monai_gflops:.2f} GFLOPs, "
        f"{monai_flops / ms['monai accurate'] / 1e6:.0f} GFLOP/s"
    )

    fp32 = run_inference(l4, x)
    bf16 = run_inference(l4, x, bf16=True)
    agree = SegmentationMetrics(["disc", "cup"])
    agree.update(bf16, (fp32 >= 0.5).float())
    bf16_dice = agree.compute()["dice"]["mean"]
    fg = (fp32 >= 0.5).sum(dim=(0, 2, 3)).tolist()
    bf16_ratio = ms["ours L4 accurate bf16"] / ms["monai accurate"]
    console.print(
        f"bf16 L4 accurate: {ms['ours L4 accurate bf16']:.1f} ms = {bf16_ratio:.2f} x MONAI fp32; "
        f"Dice of its masks against fp32's: {bf16_dice:.4f} (fp32 mask pixels: disc {fg[0]}, cup {fg[1]}). "
        f"CPU capability: {torch.backends.cpu.get_cpu_capability()} (without avx512_bf16/AMX, bf16 is emulated)"
    )

    by_key = {(r["level"], r["mode"]): r for r in rows}
    measured = {
        "L3/L4": by_key[(3, "fast")]["over_l4"],
        "L2/L4": by_key[(2, "fast")]["over_l4"],
        "L1/L4": by_key[(1, "fast")]["over_l4"],
        "L4/MONAI fp32": by_key[(4, "accurate")]["ours_over_monai"],
        "L4/MONAI bf16": bf16_ratio,
    }
    if not args.no_compile:
        for k in ("L3", "L2", "L1"):
            measured[f"{k}/L4 compiled"] = by_key[(int(k[1]), "fast")]["compiled_over_l4"]
        measured["L4/MONAI fp32 compiled"] = by_key[(4, "accurate")]["compiled_over_monai"]
    for name, value in measured.items():
        target = TARGETS[name.replace(" compiled", "")]
        verdict = "met" if value <= target else "NOT met"
        console.print(f"{name:24s} {value:5.2f}  (target <= {target:.2f}: {verdict})")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = dict(
        size=size,
        threads=args.threads,
        repeats=args.repeats,
        widths=args.widths,
        rows=rows,
        peak_gflop_per_s=peak,
        monai_gflops=monai_gflops,
        bf16=dict(ms=ms["ours L4 accurate bf16"], over_monai=bf16_ratio, dice_vs_fp32=bf16_dice, fp32_mask_pixels=fg),
        ratios=measured,
        medians_ms=ms,
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
