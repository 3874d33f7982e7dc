"""The OpenCL executable's interface: devices, fetching, inspection, memory plan."""

from __future__ import annotations

import numpy as np
import pytest
from lightnet_graph.backends.opencl import (
    OpenCLBackend,
    OpenCLExecutable,
    select_device,
)
from lightnet_graph.backends.opencl.device import list_devices
from opencl_support import import_pyopencl, opencl_backend

import lightnet_graph as lg
from lightnet_graph.errors import InputValueError
from lightnet_graph.models import load_model

import_pyopencl()


def _mlp(dtype: str = "float32"):
    model = load_model("mlp-bn", dtype=dtype, batch=6, hidden=9)
    program = lg.compile(loss=model.loss, backend=opencl_backend())
    return model, program, model.make_feeds(np.random.default_rng(0))


def test_backend_is_found_by_name_and_entry_point():
    opencl_backend()
    from importlib.metadata import entry_points

    assert "opencl" in {ep.name for ep in entry_points(group="lightnet_graph.backends")}
    graph = lg.Graph("named")
    x = graph.input("x", (3,))
    program = lg.compile(lg.sum(x * 2.0), backend="opencl")
    assert isinstance(program, OpenCLExecutable)
    assert program.run(x=np.arange(3.0))["sum"] == pytest.approx(6.0)


def _default_device() -> tuple[int, int, object]:
    """The device the other tests use, with its platform and device index."""
    opencl_backend()
    chosen = select_device()
    return next(entry for entry in list_devices() if entry[2] == chosen)


@pytest.mark.parametrize("how", ["index", "name"])
def test_device_chosen_by_environment(how: str, monkeypatch: pytest.MonkeyPatch):
    platform, index, device = _default_device()
    request = f"{platform}:{index}" if how == "index" else device.name.strip().lower()
    monkeypatch.setenv("LIGHTNET_OPENCL_DEVICE", request)
    graph = lg.Graph("device")
    x = graph.input("x", (2,))
    program = lg.compile(lg.sum(x), backend="opencl")
    assert program.device.name == device.name


def test_device_argument_overrides_environment(monkeypatch: pytest.MonkeyPatch):
    platform, index, device = _default_device()
    monkeypatch.setenv("LIGHTNET_OPENCL_DEVICE", "no-such-device")
    graph = lg.Graph("device")
    x = graph.input("x", (2,))
    program = lg.compile(lg.sum(x), backend=OpenCLBackend(device=f"{platform}:{index}"))
    assert program.device.name == device.name


def test_fetch_reads_back_only_named_outputs():
    model, program, feeds = _mlp()
    values = program.run(feeds, fetch=["loss"])
    assert list(values) == ["loss"]
    with pytest.raises(InputValueError, match="'grad/nope' is not an output"):
        program.run(feeds, fetch=["grad/nope"])


def test_states_stay_on_device_until_read():
    model, program, feeds = _mlp("float64")
    reference = lg.compile(loss=model.loss)
    for _ in range(2):
        program.run(feeds, fetch=[])
        reference.run(feeds)
    for name, value in reference.get_states().items():
        assert np.allclose(program.get_states()[name], value, rtol=1e-12, atol=0), name
    program.set_states({"bn1.running_mean": np.full(9, 0.5)})
    assert np.array_equal(program.states["bn1.running_mean"], np.full(9, 0.5))


def test_kernels_report_nodes_sizes_and_launches():
    _, program, _ = _mlp()
    kernels = program.kernels
    assert kernels
    assert sum(info.launches for info in kernels) == len(program.schedule)
    covered = {node for info in kernels for node in info.nodes}
    assert "softmax_cross_entropy" in covered
    for info in kernels:
        assert f"__kernel void {info.name}(" in info.source
        assert info.source in program.source
        assert len(info.global_size) == len(info.local_size)
        for size, local in zip(info.global_size, info.local_size, strict=True):
            assert size % local == 0
    assert "host schedule" in program.source


def test_identical_kernels_are_listed_once():
    graph = lg.Graph("repeat")
    x = graph.input("x", (5, 7))
    y = x
    for _ in range(4):
        y = lg.tanh(y @ lg.transpose(graph.parameter(f"w{_}", (7, 7), init=0.1)))
    program = lg.compile({"y": y}, backend=opencl_backend())
    names = [info.name for info in program.kernels]
    assert len(names) == len(set(names))
    launches = {info.name: info.launches for info in program.kernels}
    assert sorted(launches.values()) == [4, 4]


def test_memory_plan_reuses_dead_buffers():
    model = load_model("char-lstm", batch=3, hidden=8, seq_len=12)
    program = lg.compile(loss=model.loss, backend=opencl_backend())
    plan = program.memory_plan()
    assert plan.peak_bytes < plan.peak_bytes_without_reuse
    assert plan.peak_bytes == sum(buffer.nbytes for buffer in plan.buffers)
    assert len(plan.buffers) == len(program._buffers)
    shared = [buffer for buffer in plan.buffers if len(buffer.values) > 1]
    assert shared


def test_profile_counts_launches_and_time():
    _, program, feeds = _mlp()
    report = program.profile(feeds, repeat=3)
    assert report.runs == 3
    assert report.total_s > 0
    per_kernel = {k.name: k for k in report.kernels}
    for info in program.kernels:
        assert per_kernel[info.name].launches == info.launches
        assert per_kernel[info.name].total_s >= 0
    assert "device time per run" in report.table()


def test_fast_math_only_when_requested():
    assert OpenCLBackend().build_options == ""
    graph = lg.Graph("fast")
    x = graph.input("x", (5,))
    backend = opencl_backend(build_options="-cl-fast-relaxed-math")
    program = lg.compile({"y": lg.exp(x)}, backend=backend)
    values = program.run(x=np.linspace(-1.0, 1.0, 5))
    assert np.allclose(values["y"], np.exp(np.linspace(-1.0, 1.0, 5)), rtol=1e-3)
