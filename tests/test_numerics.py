"""--check-numerics names the first op that produces NaN or Inf."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph.cli import main
from lightnet_graph.errors import NumericsError


def test_log_of_negative_named_with_line() -> None:
    g = lg.Graph("bad-log", dtype="float64")
    x = g.input("x", (4,))
    w = g.parameter("w", (4,), init=1.0)
    shifted = x * w - 10.0
    logged = lg.log(shifted)  # the op that makes NaN
    loss = lg.sum(lg.tanh(logged))
    line = inspect.currentframe().f_lineno - 2
    program = lg.compile(loss=loss, check_numerics=True)
    with pytest.raises(NumericsError) as caught:
        program.run(x=np.arange(4.0))
    message = str(caught.value)
    assert message.startswith("log ")
    assert "produced NaN" in message
    assert f"test_numerics.py:{line}" in message


def test_numerics_check_leaves_weights_untouched() -> None:
    g = lg.Graph("overflow", dtype="float64")
    x = g.input("x", (2,))
    w = g.parameter("w", (2,), init=1.0)
    loss = lg.sum(lg.exp(x * w))
    program = lg.compile(loss=loss, optimizer=lg.optim.SGD(0.1), check_numerics=True)
    with pytest.raises(NumericsError, match="exp .* produced Inf"):
        program.run(x=np.array([1.0, 1000.0]))
    assert np.array_equal(program.get_parameters()["w"], [1.0, 1.0])


def test_nan_input_is_named() -> None:
    g = lg.Graph("nan-input", dtype="float64")
    x = g.input("x", (2,))
    program = lg.compile(lg.sum(lg.tanh(x)), check_numerics=True)
    with pytest.raises(NumericsError, match="input 'x' holds NaN before any op runs"):
        program.run(x=np.array([0.0, np.nan]))


def test_finite_runs_pass_the_check() -> None:
    g = lg.Graph("fine", dtype="float64")
    x = g.input("x", (2,))
    program = lg.compile(lg.sum(lg.tanh(x)), check_numerics=True)
    assert program.run(x=np.array([0.5, -0.5]))["sum"] == pytest.approx(0.0)


def test_check_numerics_flag_on_command_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model.py"
    model.write_text(
        "import lightnet_graph as lg\n"
        "def build(dtype='float64'):\n"
        "    g = lg.Graph('bad', dtype=dtype)\n"
        "    x = g.input('x', (3,))\n"
        "    w = g.parameter('w', (3,), init=1.0)\n"
        "    return lg.sum(lg.log(x * w - 100.0))\n"
    )
    status = main(["gradcheck", f"{model}:build", "--check-numerics"])
    error = capsys.readouterr().err
    assert status == 2
    assert "log 'log'" in error
    assert "model.py:6" in error
