"""The `unetpp` command: one subcommand per pipeline stage, plus the registry."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from unetpp import layout as L
from unetpp.errors import (
    EXIT_DID_NOT_LEARN,
    EXIT_FAILURE,
    EXIT_FILE_ENV,
    EXIT_OK,
    EXIT_USER_ERROR,
    DidNotLearn,
    UserError,
)
from unetpp.files import write_json
from unetpp.params import load_params


def cmd_summary(args: argparse.Namespace) -> None:
    """Build the configured model and report its parameters and GFLOPs per level and mode."""
    from unetpp.evaluation.summary import model_summary

    params = load_params(args.params)
    summary = model_summary(params.model, params.data.image_size)
    write_json(Path(args.out), summary)
    cfg = summary["config"]
    table = Table(
        title=f"{summary['arch']}: widths {list(cfg['widths'])}, norm {cfg['norm']}, "
        f"upsample {cfg['upsample']}, {summary['input_size']}x{summary['input_size']} input"
    )
    for col in ("level", "mode", "nodes", "heads", "parameters", "GFLOPs"):
        table.add_column(col, justify="right")
    for row in summary["levels"]:
        table.add_row(
            f"L{row['level']}",
            row["mode"],
            str(row["nodes"]),
            ",".join(map(str, row["heads"])),
            f"{row['parameters']:,}",
            f"{row['gflops']:.2f}",
        )
    console = Console()
    console.print(table)
    console.print(f"full model: {summary['parameters']:,} parameters; written {args.out}")


def cmd_ingest(args: argparse.Namespace) -> None:
    """Read the configured source into data/prepared (arrays + manifest.csv), gated by validation; unchanged
    samples are reused, new ones get their split from the ledger's rule and join the ledger."""
    from unetpp.data.ingest import ingest, read_record

    params = load_params(args.params)
    manifest = ingest(params, Path(args.out), Path(args.splits))
    counts = manifest["split"].value_counts().to_dict()
    record = read_record(Path(args.out))
    done = ", ".join(f"{what} {record[what]}" for what in ("new", "changed", "reused") if record[what])
    print(f"ingested {len(manifest)} samples from {params.data.source} into {args.out}: {counts}; {done}")
    if record["removed"]:
        print(f"no longer in the source: {len(record['removed'])} sample(s), e.g. {record['removed'][:5]}")


def cmd_validate(args: argparse.Namespace) -> None:
    """Run the Great Expectations gate over the manifest; write the JSON report and Data Docs."""
    from unetpp.data.prepared import load_manifest
    from unetpp.data.validate import validate_manifest, write_report

    params = load_params(args.params)
    report = validate_manifest(load_manifest(Path(args.prepared)), params, docs_dir=Path(args.docs))
    write_report(report, Path(args.report))
    report.raise_for_failure()
    print(f"validation passed; report {args.report}, Data Docs {args.docs}/index.html")


def cmd_plan(args: argparse.Namespace) -> None:
    """Fingerprint the prepared data and derive the training recipe: plans.json, printed."""
    from unetpp.planning.plan import plan

    result = plan(load_params(args.params), Path(args.prepared), Path(args.out))
    table = Table(title=f"plan ({args.out}): the recipe and its rules")
    for col in ("value", "from", "rule"):
        table.add_column(col if col != "value" else "name = value")
    for name, entry in result["recipe"].items():
        table.add_row(f"{name} = {entry['value']}", entry["from"], entry["rule"] + _warning(entry))
    console = Console(width=160)
    console.print(json.dumps(result["fingerprint"]["images"]), result["fingerprint"]["classes"])
    console.print(table)


def _warning(entry: dict) -> str:
    return f" -- WARNING: {entry['warning']}" if "warning" in entry else ""


def cmd_train(args: argparse.Namespace) -> None:
    """Train (or resume) the configured model by the plan; writes models/ and metrics/, logs to MLflow."""
    from unetpp.training.loop import train

    params = load_params(args.params)
    if args.arch:  # the baseline: the same plan and recipe, another network
        model = type(params.model).model_validate({**params.model.model_dump(), "arch": args.arch})
        params = params.model_copy(update={"model": model})
    summary = train(params, Path(args.prepared), Path(args.plans), Path(args.models), Path(args.metrics))
    if summary:
        best = summary["best"]
        scores = " ".join(f"{k} {v:.4f}" for k, v in best.items() if k.startswith("dice_"))
        end = summary["ended"]
        why = {"planned": "the planned epochs", "plateau": "val stopped improving", "cap": "the cap"}[end["reason"]]
        print(
            f"best epoch {summary['best_epoch']}/{summary['epochs']}: {scores}; stopped by {why} "
            f"(planned {end['planned']}, cap {end['cap']} epochs; val mean Dice {end['gain']:+.4f} over the last "
            f"{end['patience']} validations); learning guard: {summary['learning_guard'][:200]}"
        )


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Measure every pruning level and mode: Dice, IoU, BCE, parameters, GFLOPs, latency."""
    from unetpp.evaluation.evaluate import evaluate

    evaluate(load_params(args.params), Path(args.prepared), Path(args.models), Path(args.metrics), Path(args.plots))


def cmd_select(args: argparse.Namespace) -> None:
    """Choose the fastest level and mode within the Dice tolerance; fit its guard; export it; log it to MLflow."""
    from unetpp.evaluation.select import select

    selected = select(load_params(args.params), Path(args.prepared), Path(args.metrics), Path(args.models))
    print(f"selected L{selected['level']} {selected['mode']}: {selected['reason']}")
    guard = selected["guard"]
    print(
        f"guard (val): confidence by {guard['estimator']}, low under {guard['low_confidence_below']}; "
        "out of distribution over Mahalanobis "
        + ", ".join(
            f"{b['threshold']:.2f} ({name}, {b['features']} features)" for name, b in guard["ood_blocks"].items()
        )
    )


def cmd_test(args: argparse.Namespace) -> None:
    """Score the selected model on the test split through the served code path, at the source resolution."""
    from unetpp.evaluation.test import score_test_split

    summary = score_test_split(
        load_params(args.params), Path(args.prepared), Path(args.models), Path(args.metrics), Path(args.reports)
    )
    table = Table(title=f"test split ({summary['cases']} cases, {summary['resolution']}), {summary['variant']}")
    for col in ("metric", "mean", "95% interval", "cases"):
        table.add_column(col)
    for key, value in summary.items():
        if isinstance(value, dict) and "ci95" in value and value["mean"] is not None:
            table.add_row(
                key, f"{value['mean']:.4f}", f"{value['ci95'][0]:.4f} - {value['ci95'][1]:.4f}", str(value["n"])
            )
    Console(width=120).print(table)


def cmd_baseline(args: argparse.Namespace) -> None:
    """The U-Net baseline by UNet++'s plan: train, evaluate, select and test, each as its own command does it,
    in one process (one start-up, not four: imports and the tracking store cost seconds each)."""
    unet = argparse.Namespace(**vars(args), arch="unet")
    for step in (cmd_train, cmd_evaluate, cmd_select, cmd_test):
        step(unet)


def cmd_report(args: argparse.Namespace) -> None:
    """The seed's comparison: UNet++ against the U-Net baseline, reports/report.md with its figures."""
    from unetpp import tracking
    from unetpp.evaluation.report import report

    params = load_params(args.params)
    models, metrics, reports = Path(args.models), Path(args.metrics), Path(args.reports)
    runs = {
        "unetpp": (models, metrics, reports),
        "unet": (models / L.BASELINE, metrics / L.BASELINE, reports / L.BASELINE),
    }
    out = report(runs, params.model.class_names, reports / "report.md")
    with tracking.pipeline_run(params.tracking, models):
        for name in ("report.md", "report_pareto.png", "report_curves.png"):
            tracking.mlflow.log_artifact(str(out.parent / name), "report")
    print(f"written {out}")


def cmd_registry(args: argparse.Namespace) -> None:
    """The registered model: show it, register the selection, promote through the gate, roll back."""
    from unetpp.registry.promotion import Registry

    registry = Registry(load_params(args.params))
    if args.action == "show":
        print(json.dumps(registry.show(), indent=2))
    elif args.action == "register":
        version, created = registry.register(Path(args.models))
        print(f"{'registered' if created else 'already registered as'} {registry.name} version {version.version}")
    elif args.action == "promote":
        decision = registry.gate(args.version, Path(args.prepared))
        print(json.dumps(decision.as_dict(), indent=2))
    else:
        old, new = registry.rollback()
        print(f"{registry.name}: champion rolled back from version {old} to {new}")


def cmd_serve(args: argparse.Namespace) -> None:
    """TorchServe: package the champion (or --version), start, stop, status, swap in a new archive."""
    from unetpp.serving.server import Server

    server = Server(load_params(args.params))
    if args.action == "package":
        mar, version = server.package(args.version)
        print(f"packaged {server.name} version {version}: {mar}")
    elif args.action == "start":
        info = server.start(Path(args.mar) if args.mar else None)
        print(f"TorchServe ready at {server.inference} (pid {info['pid']}): {json.dumps(info['versions'])}")
    elif args.action == "stop":
        print("TorchServe stopped" if server.stop() else "TorchServe was not running")
    elif args.action == "swap":
        mar, version = server.package(args.version)
        info = server.swap(mar, version)
        print(f"{server.name} version {version} is now the default: {json.dumps(info['versions'])}")
    else:
        print(json.dumps(server.status(), indent=2))


def cmd_stack(args: argparse.Namespace) -> None:
    """The team's servers (PostgreSQL, MLflow, Prefect) for this project: up, down, status."""
    from unetpp.stack.servers import Stack, render

    stack = Stack(folder=Path(args.folder) if args.folder else None)
    if args.action == "up":
        print(render(stack.up(args.host, args.artifacts)))
    elif args.action == "down":
        stopped = stack.down()
        print(", ".join(f"{name} {'stopped' if was else 'was not running'}" for name, was in stopped.items())
              + f"; data kept in {stack.folder}")  # fmt: skip
    else:
        print(render(stack.status()))


def cmd_predict(args: argparse.Namespace) -> None:
    """Send IMAGE to the running TorchServe; print the JSON answer and write the overlay PNG."""
    from unetpp.serving.client import predict

    answer, overlay = predict(load_params(args.params), Path(args.image), Path(args.overlay) if args.overlay else None)
    print(json.dumps(answer, indent=2))
    print(f"overlay written to {overlay}", file=sys.stderr)


# subcommand -> (handler, its path options and their defaults); every one also takes --params
COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], dict[str, str]]] = {
    "summary": (cmd_summary, {"--out": str(L.REPORTS / "model.json")}),
    "ingest": (cmd_ingest, {"--out": str(L.PREPARED), "--splits": str(L.SPLITS)}),
    "validate": (
        cmd_validate,
        {
            "--prepared": str(L.PREPARED),
            "--report": str(L.REPORTS / "validation.json"),
            "--docs": str(L.REPORTS / "data_docs"),
        },
    ),
    "plan": (cmd_plan, {"--prepared": str(L.PREPARED), "--out": str(L.PLANS)}),
    "train": (
        cmd_train,
        {
            "--prepared": str(L.PREPARED),
            "--plans": str(L.PLANS),
            "--models": str(L.MODELS),
            "--metrics": str(L.METRICS),
            "--arch": None,
        },
    ),
    "evaluate": (
        cmd_evaluate,
        {
            "--prepared": str(L.PREPARED),
            "--models": str(L.MODELS),
            "--metrics": str(L.METRICS),
            "--plots": str(L.PLOTS),
        },
    ),
    "select": (cmd_select, {"--prepared": str(L.PREPARED), "--metrics": str(L.METRICS), "--models": str(L.MODELS)}),
    "test": (
        cmd_test,
        {
            "--prepared": str(L.PREPARED),
            "--models": str(L.MODELS),
            "--metrics": str(L.METRICS),
            "--reports": str(L.REPORTS),
        },
    ),
    "baseline": (
        cmd_baseline,
        {
            "--prepared": str(L.PREPARED),
            "--plans": str(L.PLANS),
            "--models": str(L.MODELS / L.BASELINE),
            "--metrics": str(L.METRICS / L.BASELINE),
            "--plots": str(L.PLOTS / L.BASELINE),
            "--reports": str(L.REPORTS / L.BASELINE),
        },
    ),
    "report": (cmd_report, {"--models": str(L.MODELS), "--metrics": str(L.METRICS), "--reports": str(L.REPORTS)}),
    "registry": (cmd_registry, {"--models": str(L.MODELS), "--prepared": str(L.PREPARED), "--version": None}),
    "serve": (cmd_serve, {"--version": None, "--mar": None}),
    "predict": (cmd_predict, {"--overlay": None}),
    # --host: 127.0.0.1 (the default) or 0.0.0.0 for the team; --artifacts: a folder or s3://bucket/prefix
    "stack": (cmd_stack, {"--folder": None, "--host": None, "--artifacts": None}),
}
# subcommands that take an action word first: name -> the actions
ACTIONS = {
    "registry": ("show", "register", "promote", "rollback"),
    "serve": ("package", "start", "stop", "status", "swap"),
    "stack": ("up", "down", "status"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetpp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (func, options) in COMMANDS.items():
        p = sub.add_parser(name, help=func.__doc__)
        if name in ACTIONS:
            p.add_argument("action", choices=ACTIONS[name])
        if name == "predict":
            p.add_argument("image")
        p.add_argument("--params", default=str(L.PARAMS))
        for flag, default in options.items():
            p.add_argument(flag, default=default)
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; the exit code says what kind of failure it was (`unetpp.errors`)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # argparse: --help exits 0, a usage error 2 (a wrong command line)
        if done.code:
            _record("(arguments)", EXIT_USER_ERROR, "invalid command line")
        raise
    try:
        args.func(args)
    except UserError as err:
        return _fail(args.command, EXIT_USER_ERROR, err)
    except DidNotLearn as err:
        return _fail(args.command, EXIT_DID_NOT_LEARN, err)
    except Exception as err:  # may pass on a retry: a killed worker, out of memory, a busy store
        traceback.print_exc()
        return _fail(args.command, EXIT_FAILURE, err)
    return EXIT_OK


def _fail(command: str, code: int, err: Exception) -> int:
    """Print the error; when the flow asked for it ($UNETPP_EXIT_FILE), leave the code where it can read it."""
    print(f"unetpp {command}: error: {err}", file=sys.stderr)
    _record(command, code, str(err))
    return code


def _record(command: str, code: int, error: str) -> None:
    exit_file = os.environ.get(EXIT_FILE_ENV)
    if exit_file:
        Path(exit_file).write_text(json.dumps({"command": command, "code": code, "error": error}))


if __name__ == "__main__":
    sys.exit(main())
