"""examples/inspect_kernels.py runs as it is, with or without an OpenCL device."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "inspect_kernels.py"
HEADER = re.compile(r"^(?://|#) kernel (\S+): (\d+) launch(?:es)? per run$", re.M)
TOTAL = re.compile(r"distinct kernels?, (\d+) launch(?:es)? per run")


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_example_prints_each_kernel_once() -> None:
    output = _run()
    headers = HEADER.findall(output)
    assert headers, output[:2000]
    names = [name for name, _ in headers]
    assert len(names) == len(set(names))
    (total,) = TOTAL.findall(output)
    assert sum(int(count) for _, count in headers) == int(total)


def test_example_falls_back_to_numpy_without_opencl() -> None:
    env = dict(os.environ, LIGHTNET_OPENCL_DEVICE="no-such-device")
    output = _run("--hidden", "8", "--seq-len", "2", env=env)
    assert output.startswith("OpenCL is not usable here, so the kernels are NumPy's")
    assert "# kernel run: 1 launch per run" in output
    assert "def run(inputs, parameters, states, constants, buffers):" in output
