"""The example scripts run as they are."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_mlp_digits_example_reports_accuracy() -> None:
    pytest.importorskip("sklearn")
    output = _run(str(EXAMPLES / "mlp_digits.py"))
    assert "def run(inputs, parameters, states, constants, buffers):" in output
    accuracy = float(output.strip().splitlines()[-1].split()[2].rstrip("%"))
    assert accuracy >= 90.0, output


def test_char_lstm_example_trains_and_samples() -> None:
    output = _run(str(EXAMPLES / "char_lstm.py"), "--steps", "25", "--hidden", "16")
    assert "step 25: training loss" in output
    assert "validation loss" in output
    assert "The " in output
