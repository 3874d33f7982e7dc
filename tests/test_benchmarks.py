"""benchmarks/run.py --quick completes and reports every row; no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import workloads  # noqa: E402
from peer import GEMM_PEERS, STEP_PEERS  # noqa: E402

# Peers that are part of lightnet-graph or need nothing beyond its install.
MUST_RUN = {"lightnet-numpy", "numpy-hand"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    folder = tmp_path_factory.mktemp("benchmarks")
    json_path, markdown_path = folder / "quick.json", folder / "quick.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--json",
            str(json_path),
            "--markdown",
            str(markdown_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(json_path.read_text()), markdown_path.read_text()


def _required() -> set[str]:
    if os.environ.get("LIGHTNET_REQUIRE_OPENCL") == "1":
        return MUST_RUN | {"lightnet-opencl"}
    return MUST_RUN


def test_step_rows_cover_every_peer(quick_run):
    result, _ = quick_run
    seen = {(row["workload"], row["peer"]) for row in result["steps"]}
    for name in workloads.QUICK:
        for peer in STEP_PEERS:
            if name == "mlp" and peer == "torch-cells":
                continue
            assert (name, peer) in seen


def test_step_rows_are_well_formed(quick_run):
    result, _ = quick_run
    for row in result["steps"]:
        assert isinstance(row["status"], str)
        if row["peer"] in _required():
            assert row["status"] == "ok", row
        if row["status"] == "ok":
            assert row["median_s"] > 0
            assert row["first_s"] > 0
            assert row["peak_rss_mib"] > 0
            assert row["ratio"] >= 1.0


def test_lightnet_backends_agree_on_first_loss(quick_run):
    result, _ = quick_run
    for name in workloads.QUICK:
        losses = [
            row["first_loss"]
            for row in result["steps"]
            if row["workload"] == name
            and row["peer"].startswith("lightnet-")
            and row["status"] == "ok"
        ]
        assert max(losses) - min(losses) <= 1e-4 * abs(losses[0])


def test_compile_rows_cover_every_length(quick_run):
    result, _ = quick_run
    lengths = [row["steps"] for row in result["compile"]]
    assert lengths == list(workloads.COMPILE_LENGTHS["quick"])
    for row in result["compile"]:
        assert row["status"] == "ok", row
        assert row["seconds"] > 0


def test_gemm_rows_cover_every_size_and_peer(quick_run):
    result, _ = quick_run
    seen = {(row["size"], row["peer"]) for row in result["gemm"]}
    for size in workloads.GEMM_SIZES["quick"]:
        for peer in GEMM_PEERS:
            assert (size, peer) in seen
    for row in result["gemm"]:
        if row["peer"] == "numpy" or (row["peer"] in _required()):
            assert row["status"] == "ok", row
        if row["status"] == "ok":
            assert row["gflops"] > 0


def test_report_names_machine_and_command(quick_run):
    result, markdown = quick_run
    assert result["machine"]["cores"] >= 1
    assert "benchmarks/run.py --quick" in result["command"]
    assert "## Training step: char-lstm" in markdown
    assert "## float32 GEMM" in markdown
