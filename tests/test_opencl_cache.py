"""Built OpenCL programs are cached on disk, so a second process builds nothing.

The child processes turn off pyopencl's and PoCL's own caches, and count
every program that pyopencl builds from source. A model's kernels are
built as one program.
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

import os

import lightnet_graph as lg
from lightnet_graph.backends.opencl import OpenCLBackend
from lightnet_graph.backends.opencl.cache import BUILD_COUNTS

graph = lg.Graph("cached", dtype="float32")
x = graph.input("x", (6, 5))
w = graph.parameter("w", (3, 5), init=lg.init.xavier_uniform)
b = graph.parameter("b", (3,))
store = {"1": True, "0": False}.get(os.environ["STORE_BINARIES"])
backend = OpenCLBackend(store_binaries=store)
program = lg.compile(loss=lg.mean(lg.tanh(lg.linear(x, w, b))), backend=backend)
values = program.run(x=np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(6, 5))
print(json.dumps({
    "source_programs": sum(from_source),
    "kernels": len(program.kernels),
    "disk": BUILD_COUNTS["disk"],
    "loss": float(values["loss"]),
}))
"""


def _run_child(
    cache_dir: Path, store_binaries: str = "1", pocl_cache: Path | None = None
) -> subprocess.Popen:
    """Compile and run a small model in a new process.

    ``store_binaries`` is "1", "0" or "" (the backend's default). PoCL's
    own cache is off unless ``pocl_cache`` names its folder.
    """
    env = dict(os.environ)
    env.update(
        PYOPENCL_NO_CACHE="1",
        LIGHTNET_CACHE_DIR=str(cache_dir),
        STORE_BINARIES=store_binaries,
    )
    if pocl_cache is None:
        env["POCL_KERNEL_CACHE"] = "0"
    else:
        env.update(POCL_KERNEL_CACHE="1", POCL_CACHE_DIR=str(pocl_cache))
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
    assert first["kernels"] > 1
    assert first["source_programs"] == 1
    assert second["source_programs"] == 0
    assert second["disk"] == 1
    assert second["kernels"] == first["kernels"]
    assert second["loss"] == first["loss"]


def test_processes_share_the_cache_concurrently(tmp_path: Path):
    opencl_backend()
    racing = [_run_child(tmp_path) for _ in range(2)]
    results = [_result(process) for process in racing]
    assert results[0]["loss"] == results[1]["loss"]
    assert not list((tmp_path / "opencl").glob(".tmp-*"))
    assert len(list((tmp_path / "opencl").glob("*.bin"))) == 1
    third = _result(_run_child(tmp_path))
    assert third["source_programs"] == 0
    assert third["loss"] == results[0]["loss"]


def _two_kernel_loss(graph_name: str):
    import lightnet_graph as lg

    graph = lg.Graph(graph_name, dtype="float32")
    x = graph.input("x", (6, 5))
    w = graph.parameter("w", (3, 5), init=lg.init.xavier_uniform)
    return lg.mean(lg.tanh(lg.linear(x, w)))


def _platform_name(backend) -> str:
    from lightnet_graph.backends.opencl import select_device

    return select_device(backend.device).platform.name


def test_pocl_builds_use_pocl_cache(tmp_path: Path):
    from lightnet_graph.backends.opencl.cache import POCL_PLATFORM

    backend = opencl_backend()
    if _platform_name(backend) != POCL_PLATFORM:
        pytest.skip("the default OpenCL device is not PoCL")
    pocl_cache = tmp_path / "pocl"

    def compiled() -> list[Path]:
        # PoCL 3.1 stores each program's LLVM IR as program.bc and each
        # kernel's machine code as a .so file for each work-group size.
        return sorted(pocl_cache.rglob("*.bc")) + sorted(pocl_cache.rglob("*.so"))

    first = _result(_run_child(tmp_path, "", pocl_cache))
    files = {path: path.stat().st_mtime_ns for path in compiled()}
    second = _result(_run_child(tmp_path, "", pocl_cache))
    assert not list((tmp_path / "opencl").glob("*.bin"))
    assert len(files) == first["kernels"] + 1
    assert {path: path.stat().st_mtime_ns for path in compiled()} == files
    assert second["loss"] == first["loss"]


def test_model_kernels_share_one_program(tmp_path: Path):
    import lightnet_graph as lg

    program = lg.compile(
        loss=_two_kernel_loss("shared"), backend=opencl_backend(cache_dir=tmp_path)
    )
    built = {id(p) for p in program._programs.values()}
    assert len(program._programs) > 1
    assert len(built) == 1


def test_failed_program_falls_back_to_kernels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    import numpy as np
    from lightnet_graph.backends.opencl import cache

    import lightnet_graph as lg

    program_source = cache.program_source

    def clashing_source(kernels):
        # Two different definitions of one helper: no single kernel has them.
        clash = "float clash(float x) { return x; }\n"
        return clash + clash.replace("x; }", "-x; }") + program_source(kernels)

    loss = _two_kernel_loss("fallback")
    reference = lg.compile(loss=loss).run(x=np.ones((6, 5), np.float32))["loss"]
    monkeypatch.setattr(cache, "program_source", clashing_source)
    program = lg.compile(loss=loss, backend=opencl_backend(cache_dir=tmp_path))
    built = {id(p) for p in program._programs.values()}
    assert len(built) == len(program._programs) > 1
    assert "built as its own program" in caplog.text
    value = program.run(x=np.ones((6, 5), np.float32))["loss"]
    np.testing.assert_allclose(value, reference, rtol=1e-5)
