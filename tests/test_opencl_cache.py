"""Built OpenCL programs are cached on disk, so a second process builds nothing.

The child processes turn off pyopencl's and PoCL's own caches, and count
every program that pyopencl builds from source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opencl_support import import_pyopencl, opencl_backend

import_pyopencl()

CHILD = """
import json
import numpy as np
import pyopencl

from_source = []
original_init = pyopencl.Program.__init__

def counting_init(self, context, source_or_devices, binaries=None):
    # The two-argument form builds from source; the three-argument one from binaries.
    from_source.append(binaries is None)
    original_init(self, context, source_or_devices, binaries)

pyopencl.Program.__init__ = counting_init

import lightnet_graph as lg
from lightnet_graph.backends.opencl.cache import BUILD_COUNTS

graph = lg.Graph("cached", dtype="float32")
x = graph.input("x", (6, 5))
w = graph.parameter("w", (3, 5), init=lg.init.xavier_uniform)
b = graph.parameter("b", (3,))
program = lg.compile(loss=lg.mean(lg.tanh(lg.linear(x, w, b))), backend="opencl")
values = program.run(x=np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(6, 5))
print(json.dumps({
    "source_programs": sum(from_source),
    "kernels": len(program.kernels),
    "disk": BUILD_COUNTS["disk"],
    "loss": float(values["loss"]),
}))
"""


def _run_child(cache_dir: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        PYOPENCL_NO_CACHE="1", POCL_KERNEL_CACHE="0", LIGHTNET_CACHE_DIR=str(cache_dir)
    )
    return subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(process: subprocess.Popen) -> dict:
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return json.loads(stdout.strip().splitlines()[-1])


def test_second_process_builds_no_program_from_source(tmp_path: Path):
    opencl_backend()
    first = _result(_run_child(tmp_path))
    second = _result(_run_child(tmp_path))
    assert first["source_programs"] == first["kernels"] > 0
    assert second["source_programs"] == 0
    assert second["disk"] == second["kernels"] == first["kernels"]
    assert second["loss"] == first["loss"]


def test_processes_share_the_cache_concurrently(tmp_path: Path):
    opencl_backend()
    racing = [_run_child(tmp_path) for _ in range(2)]
    results = [_result(process) for process in racing]
    assert results[0]["loss"] == results[1]["loss"]
    assert not list((tmp_path / "opencl").glob(".tmp-*"))
    assert len(list((tmp_path / "opencl").glob("*.bin"))) == results[0]["kernels"]
    third = _result(_run_child(tmp_path))
    assert third["source_programs"] == 0
    assert third["loss"] == results[0]["loss"]
