"""The user-defined cell in examples/custom_cell.py: its gradients and its training run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from lightnet_graph.gradcheck import gradcheck
from lightnet_graph.models import load_model

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_cell.py"


def test_custom_cell_passes_gradcheck() -> None:
    model = load_model(
        f"{EXAMPLE}:build", dtype="float64", batch=3, hidden=6, seq_len=5
    )
    report = gradcheck(model)
    failed = [(c.name, c.error) for c in report.parameters if not c.passed]
    assert report.passed, f"parameters whose gradient is off: {failed}"
    assert {c.name for c in report.parameters} >= {"mgu.w_fh", "mgu.w_nh", "embedding"}


def test_custom_cell_training_lowers_the_loss() -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), "--steps", "50"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    losses = [float(x) for x in re.findall(r"mean loss ([0-9.]+)", run.stdout)]
    assert len(losses) == 2, run.stdout
    assert losses[1] < losses[0], run.stdout
