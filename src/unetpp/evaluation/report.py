"""The report stage: the seed's comparison, UNet++ against the U-Net baseline trained by the same plan.

`reports/report.md` (readable on GitHub and in the MLflow run) holds the held-out test split at the
source resolution for each architecture's selected variant (the only quality figures) with the failed
cases per class, the paired comparison of the two on the same test cases (per-case differences and
their 95% interval: two overlapping intervals of the means would hide what pairing shows), every level
x mode x mirroring on the validation split as served (what chose them), the Pareto plot of both, the
training curves of both, and the worst test cases of each. It reads only what the other
stages wrote: no split is read here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from unetpp import layout as L
from unetpp.files import write_text
from unetpp.scoring.metrics import paired_difference
from unetpp.scoring.plots import plt, save

ARCHS = {"unetpp": "UNet++", "unet": "U-Net"}


def _interval(entry: dict[str, Any] | None) -> str:
    if not entry or entry.get("mean") is None:
        return "-"
    low, high = entry["ci95"]
    return f"{entry['mean']:.4f} [{low:.4f}, {high:.4f}]"


def heldout_table(tests: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """Markdown rows: per architecture, its selected variant on the test split with 95% intervals."""
    metrics = [f"dice_{c}" for c in names] + [f"iou_{c}" for c in names] + [f"hd95_{c}" for c in names]
    # where the source gives them (Drishti-GS1): the Dice against the pixels every expert marked, the ratio's
    # error against the experts' own ratios and their spread beside it (the human floor)
    optional = [f"dice_{c}_all_experts" for c in names] + ["cdr_abs_error", "cdr_abs_error_vs_experts"]
    optional += ["cdr_abs_error_experts_spread"]
    metrics += [m for m in optional if m in next(iter(tests.values()))]
    failed = [f"failed_{c}" for c in names]
    head = ["model", "variant", "cases", *metrics, *(f"{f} (empty or Dice < 0.5)" for f in failed)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arch, t in tests.items():
        cells = [_interval(t.get(m)) for m in metrics] + [str(t.get(f, "-")) for f in failed]
        lines.append(f"| {ARCHS[arch]} | {t['variant']} | {t['cases']} | " + " | ".join(cells) + " |")
    return lines


def paired_table(reports: dict[str, Path], names: list[str]) -> list[str]:
    """Markdown rows: UNet++ - U-Net per test case (reports/test_cases.csv of each, matched by id), the
    mean difference and its 95% bootstrap interval per metric, and how many cases each wins."""
    rows = {}
    for arch, folder in reports.items():
        with (folder / "test_cases.csv").open() as fh:
            rows[arch] = {r["id"]: r for r in csv.DictReader(fh)}
    ids = sorted(rows["unetpp"])
    if sorted(rows["unet"]) != ids:
        raise ValueError("the two architectures were tested on different cases; rerun both test stages")
    lines = ["| metric | UNet++ - U-Net [95%] | cases UNet++ better / worse / equal |", "|---|---|---|"]
    for metric in [*(f"dice_{c}" for c in names), "dice_mean"]:

        def value(arch: str, i: str, m: str = metric) -> float:
            if m == "dice_mean":
                return sum(float(rows[arch][i][f"dice_{c}"]) for c in names) / len(names)
            return float(rows[arch][i][m])

        a, b = [value("unetpp", i) for i in ids], [value("unet", i) for i in ids]
        diffs = [x - y for x, y in zip(a, b, strict=True)]
        wins = (sum(d > 0 for d in diffs), sum(d < 0 for d in diffs), sum(d == 0 for d in diffs))
        lines.append(f"| {metric} | {_signed(paired_difference(a, b))} | {wins[0]} / {wins[1]} / {wins[2]} |")
    return lines


def _signed(entry: dict[str, Any]) -> str:
    low, high = entry["ci95"]
    return f"{entry['mean']:+.4f} [{low:+.4f}, {high:+.4f}]"


def validation_table(evals: dict[str, dict[str, Any]], selected: dict[str, str], names: list[str]) -> list[str]:
    """Markdown rows: every variant of both architectures on the validation split."""
    cols = [f"{m}_{c}" for m in ("dice", "iou", "hd95", "bce") for c in names]
    head = ["model", "variant", "mirroring", *cols, *(f"failed_{c}" for c in names)]
    head += ["mean Dice [95%]", "parameters", "GFLOPs", "latency ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arch, rows in evals.items():
        for key, r in rows.items():
            mark = " (selected)" if key == selected[arch] else ""
            low, high = r["dice_mean_ci95"]
            lines.append(
                f"| {ARCHS[arch]} | L{r['level']} {r['mode']}{mark} | {r.get('tta_flips') or '-'} | "
                + " | ".join(f"{r[c]:.4f}" for c in cols)
                + "".join(f" | {r[f'failed_{c}']}" for c in names)
                + f" | {r['dice_mean']:.4f} [{low:.4f}, {high:.4f}] | {r['parameters']:,} | {r['gflops']:.2f} | "
                f"{r['latency_ms']:.2f} |"
            )
    return lines


def pareto_both(evals: dict[str, dict[str, Any]], path: Path) -> Path:
    """Mean validation Dice against latency, every variant of both architectures."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for arch, marker in (("unetpp", "o"), ("unet", "s")):
        for tta, fill in ((False, "full"), (True, "none")):
            pts = [r for r in evals[arch].values() if bool(r.get("tta_flips")) == tta]
            if not pts:
                continue
            ax.plot(
                [r["latency_ms"] for r in pts],
                [r["dice_mean"] for r in pts],
                marker=marker,
                fillstyle=fill,
                linestyle="none",
                label=ARCHS[arch] + (" + mirroring" if tta else ""),
            )
            for r in pts:
                ax.annotate(
                    r["key"], (r["latency_ms"], r["dice_mean"]), textcoords="offset points", xytext=(4, 4), fontsize=7
                )
    device = next(iter(evals["unetpp"].values()))["device"]
    ax.set(xlabel=f"latency per image ({device}), ms", ylabel="mean Dice (validation)", title="accuracy against speed")
    ax.legend()
    fig.tight_layout()
    save(fig, path)
    return path


def curves_both(curves: dict[str, list[dict[str, str]]], path: Path) -> Path:
    """Validation mean Dice and loss of both architectures against epochs."""
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    for arch, rows in curves.items():
        epochs = [int(r["epoch"]) for r in rows]
        ax_loss.plot(epochs, [float(r["val_loss"]) for r in rows], label=f"{ARCHS[arch]} validation")
        ax_loss.plot(epochs, [float(r["train_loss"]) for r in rows], linestyle="--", label=f"{ARCHS[arch]} train")
        ax_dice.plot(epochs, [float(r["dice_mean"]) for r in rows], label=ARCHS[arch])
    ax_loss.set(xlabel="epoch", ylabel="BCE + Dice loss", title="loss")
    ax_dice.set(xlabel="epoch", ylabel="mean Dice", title="validation mean Dice", ylim=(0, 1))
    ax_loss.legend()
    ax_dice.legend()
    fig.tight_layout()
    save(fig, path)
    return path


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def confidence_table(tests: dict[str, dict[str, Any]], names: list[str]) -> list[str]:
    """Markdown rows: per architecture, estimator and class, the confidence on the test split: AURC (with
    the optimal and a random ranking's), failure AUROC, mean |confidence - Dice|; the shipped one in bold."""
    head = "| model | estimator | class | AURC | optimal / random | failure AUROC (failures) | mean abs. error |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for arch, t in tests.items():
        g = t["guard"]
        for est, figures in g["test"].items():
            label = f"**{g['estimator']} + val offset** (shipped)" if est == "shipped" else est
            for c in names:
                f = figures[c]
                lines.append(
                    f"| {ARCHS[arch]} | {label} | {c} | {f['aurc']:.4f} | {f['aurc_optimal']:.4f} / "
                    f"{f['aurc_random']:.4f} | {_maybe(f['failure_auroc'])} ({f['failures']}) | {f['mae']:.4f} |"
                )
    return lines


def ood_table(tests: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown rows: per architecture, the share flagged out of distribution: test split, every foreign kind."""
    kinds = list(next(iter(tests.values()))["guard"]["ood"]["foreign_by_kind"])
    lines = ["| model | test split | foreign, all | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 3)]
    for arch, t in tests.items():
        o = t["guard"]["ood"]
        cells = [f"{o['test_flagged']:.0%}", f"{o['foreign_flagged']:.0%}"]
        lines.append(
            f"| {ARCHS[arch]} | " + " | ".join(cells + [f"{o['foreign_by_kind'][k]:.0%}" for k in kinds]) + " |"
        )
    return lines


def risk_coverage_both(
    reports: dict[str, Path], tests: dict[str, dict[str, Any]], names: list[str], path: Path
) -> Path:
    """Risk (1 - mean Dice) against coverage on the test split, each architecture's shipped confidence."""
    from unetpp.scoring.risk import risk_coverage

    fig, ax = plt.subplots(figsize=(6, 4))
    for arch, folder in reports.items():
        with (folder / "test_cases.csv").open() as fh:
            rows = list(csv.DictReader(fh))
        est = tests[arch]["guard"]["estimator"]
        conf = np.array([np.mean([float(r[f"confidence_{c}"]) for c in names]) for r in rows])  # as shipped
        dice = np.array([np.mean([float(r[f"dice_{c}"]) for c in names]) for r in rows])
        coverage, risk = risk_coverage(conf, dice)
        ax.plot(coverage, risk, label=f"{ARCHS[arch]} ({est})")
        ax.plot(*risk_coverage(dice, dice), linestyle=":", label=f"{ARCHS[arch]} optimal")
    ax.set(xlabel="coverage (most confident cases kept)", ylabel="risk: 1 - mean Dice", title="test split")
    ax.legend()
    fig.tight_layout()
    save(fig, path)
    return path


def report(runs: dict[str, tuple[Path, Path, Path]], names: list[str], out: Path) -> Path:
    """Write `out` (report.md) and its PNGs beside it from each architecture's (models, metrics, reports)
    folders; return the report's path."""
    evals, tests, curves, selected = {}, {}, {}, {}
    for arch, (models, metrics, _) in runs.items():
        evals[arch] = json.loads((metrics / "eval.json").read_text())
        tests[arch] = json.loads((metrics / "test.json").read_text())
        with (metrics / "train_curve.csv").open() as fh:
            curves[arch] = list(csv.DictReader(fh))
        selected[arch] = json.loads((L.selected_file(models)).read_text())["metrics"]["key"]
    folder = out.parent
    folder.mkdir(parents=True, exist_ok=True)
    pareto_both(evals, folder / "report_pareto.png")
    curves_both(curves, folder / "report_curves.png")
    risk_coverage_both({a: r for a, (_, _, r) in runs.items()}, tests, names, folder / "report_risk_coverage.png")
    worst = {arch: reports / "test_worst.png" for arch, (_, _, reports) in runs.items()}
    lines = [
        "# UNet++ against U-Net",
        "",
        "Both trained by the same plan (`plans.json`: the same optimizer steps, batch, schedule, augmentation "
        "and grid), each level x mode with and without test-time mirroring scored on the validation split, "
        "which alone chose each architecture's variant; then that variant scored once on the held-out test "
        "split.",
        "",
        "## Test split (source resolution, masks as served; mean [95% bootstrap interval])",
        "",
        f"Scored against {next(iter(tests.values()))['reference']}.",
        "",
        *heldout_table(tests, names),
        "",
        "## UNet++ against U-Net on the same test cases (paired)",
        "",
        "Per case, UNet++'s score minus U-Net's; the mean of those differences with its 95% bootstrap "
        "interval. An interval that excludes 0 is a difference these cases show.",
        "",
        *paired_table({arch: reports for arch, (_, _, reports) in runs.items()}, names),
        "",
        "## How far to trust an answer (test split; confidence on the network's grid)",
        "",
        "Each answer's confidence per class estimates its Dice (`unetpp.runtime.guard`): `agreement` of the "
        "deep-supervision heads the variant holds, `soft_dice` of its probabilities, `combined` their mean. "
        "The shipped one is the estimator with the lowest risk-coverage area on val, shifted by its median "
        "offset from the real Dice on val (ranking kept, bias removed). AURC: mean risk (1 - Dice) over "
        "coverages, keeping the most confident cases first (lower is better). A failure is a case under "
        "the class's 10th-percentile Dice on val; AUROC: how well low confidence finds them (- where the "
        "test split holds none). A one-head model (U-Net, L1) has no head agreement.",
        "",
        *confidence_table(tests, names),
        "",
        "![risk against coverage](report_risk_coverage.png)",
        "",
        "## Out-of-distribution flag (share of answers flagged)",
        "",
        "Mahalanobis distances to the train split's, of the bottleneck features and of the input's shape and "
        "noise at its own size, each over a robust 99.5% bound (log-normal, median and upper quartile) of val's "
        "distances and train's out-of-fold ones; flagged when either is over. The foreign set is made "
        "from the first test images (`unetpp.scoring.foreign`).",
        "",
        *ood_table(tests),
        "",
        "## Validation split (source resolution, as served; what selected)",
        "",
        *validation_table(evals, selected, names),
        "",
        "![accuracy against speed](report_pareto.png)",
        "",
        "![training curves](report_curves.png)",
        "",
        "## Worst test cases",
        "",
        *(
            f"{ARCHS[arch]}: ![{ARCHS[arch]} worst test cases]({path.relative_to(folder)})"
            for arch, path in worst.items()
        ),
        "",
    ]
    write_text(out, "\n".join(lines))
    return out
