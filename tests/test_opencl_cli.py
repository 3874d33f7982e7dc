"""lightnet-graph compare: one training step on two backends, value by value."""

from __future__ import annotations

import re

import pytest
from lightnet_graph.backends.opencl.kernels import pointwise
from opencl_support import import_pyopencl, opencl_backend

from lightnet_graph.cli import main

import_pyopencl()

SMALL = ["--hidden", "6", "--batch", "3", "--seq-len", "4"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["mlp-bn", "char-gru"])
def test_compare_numpy_and_opencl_passes(model: str, dtype: str, capsys):
    opencl_backend()
    status = main(
        ["compare", model, "--backends", "numpy,opencl", "--dtype", dtype, *SMALL]
    )
    output = capsys.readouterr().out
    assert status == 0, output
    assert "||a - b||_2 <= rtol * ||b||_2 + atol * sqrt(n)" in output
    rows = re.findall(r"^(\S+)\s+opencl\s+(\S+)\s+(\S+)\s+(\S+)\s+ok$", output, re.M)
    names = {row[0] for row in rows}
    assert "loss" in names, output
    assert len(names) >= 5, output
    assert output.rstrip().endswith("passed")


def test_compare_fails_on_a_wrong_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys
):
    opencl_backend()
    monkeypatch.setenv("LIGHTNET_CACHE_DIR", str(tmp_path))
    # tanh(x) * 1.001 is off by 1e-3 relative, ten times the float32 tolerance.
    monkeypatch.setitem(pointwise._FUNCTIONS, "tanh", "1.001f * tanh")
    status = main(["compare", "mlp", "--backends", "numpy,opencl", *SMALL])
    output = capsys.readouterr().out
    assert status == 1, output
    assert "FAILED" in output
    assert re.search(r"^loss\s+opencl\s+.*FAILED$", output, re.M), output


def test_compare_needs_two_backends(capsys):
    status = main(["compare", "mlp", "--backends", "numpy"])
    captured = capsys.readouterr()
    assert status == 2
    assert "give at least two" in captured.err


def test_device_option_selects_or_names_devices(monkeypatch: pytest.MonkeyPatch, capsys):
    opencl_backend()
    monkeypatch.delenv("LIGHTNET_OPENCL_DEVICE", raising=False)
    status = main(["compare", "mlp", "--device", "no-such-device", *SMALL])
    error = capsys.readouterr().err
    assert status == 2
    assert "no OpenCL device name contains 'no-such-device'; the devices are: 0:0" in error
    assert main(["compare", "mlp", "--device", "0:0", *SMALL]) == 0
