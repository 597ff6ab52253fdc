"""The `unetpp` command: one subcommand per pipeline stage."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from unetpp.params import load_params


def _write_json(path: Path, data: object) -> None:
    """Write aside, then rename: a failure never leaves a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def cmd_summary(args: argparse.Namespace) -> None:
    """Build the configured model and report its parameters and GFLOPs per level and mode."""
    from unetpp.summary import model_summary

    params = load_params(args.params)
    summary = model_summary(params.model)
    _write_json(Path(args.out), summary)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetpp", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("summary", help=cmd_summary.__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="reports/model.json")
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"unetpp {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
