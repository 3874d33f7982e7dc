"""The lightnet-graph command: gradcheck on built-in models and planted bugs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import lightnet_graph.ops as F
from lightnet_graph.cli import main
from lightnet_graph.ops.elementwise import Tanh


def test_gradcheck_mlp_float64_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["gradcheck", "mlp", "--dtype", "float64"])
    output = capsys.readouterr().out
    assert status == 0, output
    errors = [float(e) for e in re.findall(r"(\d\.\d\de[-+]\d\d)\s+ok", output)]
    assert len(errors) == 6, output
    assert max(errors) <= 1e-6, output
    assert "passed" in output


def test_gradcheck_console_script_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lightnet_graph.cli", "gradcheck", "mlp", "--hidden", "8",
         "--batch", "4", "--samples", "4"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "max rel. error" in result.stdout


def test_gradcheck_names_op_with_wrong_rule(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def wrong_rule(self, inputs, output, dy):  # d tanh = 1 + y^2 instead of 1 - y^2
        return [F.mul(dy, F.add(1.0, F.mul(output, output)))]

    monkeypatch.setattr(Tanh, "gradient", wrong_rule)
    status = main(["gradcheck", "mlp", "--hidden", "8", "--batch", "4"])
    output = capsys.readouterr().out
    assert status == 1, output
    assert "FAILED" in output
    assert "gradient rule of op 'tanh'" in output
    assert "models.py" in output


def test_gradcheck_bn_model_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["gradcheck", "mlp-bn", "--hidden", "8", "--batch", "5"])
    assert status == 0, capsys.readouterr().out


def test_gradcheck_user_file_model(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    model_file = tmp_path / "my_model.py"
    model_file.write_text(
        "import lightnet_graph as lg\n"
        "def build(dtype='float64', batch=None, hidden=None):\n"
        "    g = lg.Graph('tiny', dtype=dtype)\n"
        "    x = g.input('x', (batch or 3, 4))\n"
        "    w = g.parameter('w', (hidden or 5, 4), init=lg.init.xavier_uniform)\n"
        "    return lg.sum(lg.sigmoid(x @ w.T))\n"
    )
    status = main(["gradcheck", f"{model_file}:build", "--hidden", "2"])
    output = capsys.readouterr().out
    assert status == 0, output
    assert "(2, 4)" in output


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("missing_file.py:build", "model file 'missing_file.py' not found"),
    ],
    ids=["unknown-name", "missing-file"],
)
def test_gradcheck_bad_model_reports_error(spec: str, expected: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["gradcheck", spec])
    captured = capsys.readouterr()
    assert status == 2
    assert expected in captured.err
    assert "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "char-lstm", "--batch", "0"], "argument --batch: 0 must be at least 1"),
        (["train", "mlp-digits", "--steps", "-3"], "argument --steps: -3 must be at least 1"),
        (["train", "mlp-digits", "--lr", "-1"], "argument --lr: -1.0 must be greater than 0"),
        (["gradcheck", "mlp", "--hidden", "x"], "argument --hidden: 'x' is not an integer"),
        (["gradcheck", "mlp", "--samples", "0"], "argument --samples: 0 must be at least 1"),
    ],
    ids=["zero-batch", "negative-steps", "negative-lr", "non-integer-hidden", "zero-samples"],
)
def test_out_of_range_options_rejected(argv: list[str], expected: str,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert expected in capsys.readouterr().err
