"""The benchmarks run end to end (tiny sizes; no timing is asserted, only the report's shape)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_latency_bench_reports_every_level_mode_and_ratio(tmp_path: Path) -> None:
    out = tmp_path / "latency.json"
    args = ["--size", "32", "--widths", "4", "8", "16", "32", "64", "--repeats", "1", "--train-steps", "1"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/latency.py"), *args, "--no-compile", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert {(r["level"], r["mode"]) for r in report["rows"]} == {
        (lv, m) for lv in (1, 2, 3, 4) for m in ("fast", "accurate")
    }
    assert set(report["ratios"]) == {"L3/L4", "L2/L4", "L1/L4", "L4/MONAI fp32", "L4/MONAI bf16"}
    assert 0.0 <= report["bf16"]["dice_vs_fp32"] <= 1.0
    assert all(r["guarded_ms"] > 0 for r in report["rows"])
    gflops = [r["gflops"] for r in report["rows"] if r["mode"] == "fast"]
    assert gflops == sorted(gflops)
    assert "target <=" in proc.stdout


@pytest.mark.slow
def test_data_growth_bench_reports_the_ratio_and_dvc_sees_a_new_file(tmp_path: Path) -> None:
    args = ["--images", "12", "--grow", "3", "--size", "48", "--files", "40", "--work", str(tmp_path / "w")]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/data_growth.py"), *args], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "reused 12" in proc.stdout and "second / first =" in proc.stdout
    assert "dvc status after adding one file" in proc.stdout and "'list:'" in proc.stdout
