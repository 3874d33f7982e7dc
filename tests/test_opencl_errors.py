"""The OpenCL backend's errors name what failed and how to fix it."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
from lightnet_graph.backends.opencl import backend as backend_module
from lightnet_graph.backends.opencl import device as device_module
from lightnet_graph.backends.opencl.errors import (
    DeviceMemoryError,
    DeviceNotFoundError,
    KernelBuildError,
    NoOpenCLPlatformError,
    UnsupportedDTypeError,
    UnsupportedSizeError,
)
from lightnet_graph.backends.opencl.kernels import pointwise
from opencl_support import import_pyopencl, opencl_backend

import lightnet_graph as lg
from lightnet_graph.errors import InputValueError, LightnetError

pyopencl = import_pyopencl()

POCL_COMMAND = 'pip install "lightnet-graph[pocl]"'


def _small_model(dtype: str = "float32", width: int = 8) -> lg.Tensor:
    graph = lg.Graph("small", dtype=dtype)
    x = graph.input("x", (4, width))
    w = graph.parameter("weights", (width, width), init=0.5)
    return lg.sum(lg.tanh(x @ w))


def test_missing_platform_names_pocl_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pyopencl, "get_platforms", lambda: [])
    with pytest.raises(NoOpenCLPlatformError) as caught:
        lg.compile(_small_model(), backend="opencl")
    message = str(caught.value)
    assert "no OpenCL platform" in message
    assert POCL_COMMAND in message
    assert isinstance(caught.value, LightnetError)


def test_platform_query_failure_is_missing_platform(monkeypatch: pytest.MonkeyPatch):
    def fail():
        raise pyopencl.LogicError("clGetPlatformIDs failed: PLATFORM_NOT_FOUND_KHR")

    monkeypatch.setattr(pyopencl, "get_platforms", fail)
    with pytest.raises(NoOpenCLPlatformError, match="pocl"):
        lg.compile(_small_model(), backend="opencl")


def test_missing_pyopencl_names_pocl_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "pyopencl", None)
    with pytest.raises(NoOpenCLPlatformError) as caught:
        lg.compile(_small_model(), backend="opencl")
    assert "pyopencl" in str(caught.value)
    assert POCL_COMMAND in str(caught.value)


def test_auto_falls_back_to_numpy_without_platform(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(pyopencl, "get_platforms", lambda: [])
    program = lg.compile(_small_model(), backend="auto")
    assert program.backend_name == "numpy"


def test_auto_skips_cpu_devices():
    opencl_backend()
    if device_module.has_gpu():
        pytest.skip("this machine has an OpenCL GPU, which auto rightly picks")
    assert lg.compile(_small_model(), backend="auto").backend_name == "numpy"


def test_unknown_device_lists_devices(monkeypatch: pytest.MonkeyPatch):
    opencl_backend()
    monkeypatch.setenv("LIGHTNET_OPENCL_DEVICE", "no-such-device")
    with pytest.raises(DeviceNotFoundError) as caught:
        lg.compile(_small_model(), backend="opencl")
    message = str(caught.value)
    assert "'no-such-device'" in message
    assert "0:0" in message


def test_device_index_out_of_range(monkeypatch: pytest.MonkeyPatch):
    opencl_backend()
    with pytest.raises(DeviceNotFoundError, match="'99:0'.*does not exist"):
        lg.compile(_small_model(), backend=backend_module.OpenCLBackend(device="99:0"))


def _fake_profile(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    real = device_module.profile_of

    def fake(device):
        return dataclasses.replace(real(device), name="tiny fake device", **changes)

    monkeypatch.setattr(backend_module, "profile_of", fake)


def test_buffer_over_max_alloc_names_value_and_limit(monkeypatch: pytest.MonkeyPatch):
    _fake_profile(monkeypatch, max_mem_alloc_size=1024)
    with pytest.raises(DeviceMemoryError) as caught:
        lg.compile(_small_model(width=32), backend=opencl_backend())
    message = str(caught.value)
    assert "'weights'" in message
    assert "float32[32, 32]" in message
    assert "4096 bytes" in message
    assert "at most 1024 bytes" in message
    assert "tiny fake device" in message


def test_program_over_global_memory_names_total(monkeypatch: pytest.MonkeyPatch):
    _fake_profile(monkeypatch, global_mem_size=2000)
    with pytest.raises(DeviceMemoryError) as caught:
        lg.compile(_small_model(width=32), backend=opencl_backend())
    message = str(caught.value)
    assert "device memory" in message
    assert "has 2000 bytes" in message
    assert "'weights'" in message


def test_float64_without_fp64_is_rejected(monkeypatch: pytest.MonkeyPatch):
    _fake_profile(monkeypatch, fp64=False)
    with pytest.raises(UnsupportedDTypeError) as caught:
        lg.compile(_small_model("float64"), backend=opencl_backend())
    message = str(caught.value)
    assert "float64" in message
    assert "cl_khr_fp64" in message
    assert "float32" in message


def test_kernel_with_syntax_error_shows_log_and_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path
):
    monkeypatch.setitem(pointwise._FUNCTIONS, "tanh", "tanh(1.0f) +* ")
    backend = opencl_backend(cache_dir=tmp_path)
    with pytest.raises(KernelBuildError) as caught:
        lg.compile(_small_model(), backend=backend)
    message = str(caught.value)
    assert "failed to build" in message
    assert "pointwise_" in message
    assert "error" in message.lower()
    assert "Offending source lines:" in message
    assert "tanh(1.0f) +* " in message


def test_out_of_range_label_is_checked_on_host():
    graph = lg.Graph("labels")
    logits = graph.input("logits", (2, 3))
    labels = graph.input("labels", (2,), dtype="int64")
    program = lg.compile(
        lg.softmax_cross_entropy(logits, labels), backend=opencl_backend()
    )
    with pytest.raises(InputValueError) as caught:
        program.run(logits=np.zeros((2, 3)), labels=np.array([0, 7]))
    message = str(caught.value)
    assert "label 7 at index (1,) is out of range for 3 classes" in message
    assert "softmax_cross_entropy" in message
    assert "test_opencl_errors.py" in message


def test_value_beyond_32_bit_indexing_is_rejected():
    opencl_backend()
    graph = lg.Graph("huge")
    x = graph.input("x", (2**16, 2**15 + 1))
    with pytest.raises(UnsupportedSizeError) as caught:
        lg.compile(lg.sum(x), backend="opencl")
    message = str(caught.value)
    assert "'x'" in message
    assert "2147549184 elements" in message
    assert "32-bit" in message
