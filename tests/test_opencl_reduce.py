"""Launch shapes of the OpenCL reductions on CPU and GPU devices.

The values of every reduction are checked against NumPy in
test_opencl_ops.py; these tests pin how the work is split.
"""

from __future__ import annotations

import pytest
from lightnet_graph.backends.opencl.kernels.reduce import launch_shape
from lightnet_graph.backends.opencl.plan import build_schedule
from opencl_support import fake_profile

import lightnet_graph as lg


@pytest.mark.parametrize(
    ("outputs", "reduced", "shape"),
    [
        (2048, 65, ((2048, 1), (256, 1))),
        (1024, 2048, ((1024, 1), (256, 1))),
        (65, 2048, ((96, 1), (32, 1))),
        (3, 100, ((3, 1), (1, 1))),
        (2, 100, ((2, 1), (1, 1))),
    ],
)
def test_cpu_reduction_gives_each_output_one_item(outputs, reduced, shape):
    assert launch_shape(outputs, reduced, 256, 256, cpu_cores=2) == shape


def test_cpu_reduction_few_outputs_keeps_lanes():
    assert launch_shape(1, 2048, 256, 256, cpu_cores=2) == ((1, 256), (1, 256))


def test_gpu_reduction_splits_rows_across_lanes():
    assert launch_shape(2048, 65, 256, 1024) == ((2048, 128), (2, 128))


@pytest.mark.parametrize(("kind", "lanes"), [("cpu", 1), ("gpu", 128)])
def test_softmax_launch_follows_device_kind(kind, lanes):
    graph = lg.Graph("rows", dtype="float32")
    logits = graph.input("logits", (512, 65))
    compiled = lg.compile({"p": lg.softmax(logits)})
    schedule = build_schedule(
        compiled.graph, compiled.outputs, fake_profile(kind, compute_units=4)
    )
    (launch,) = [x for x in schedule.launches if x.kernel.kind == "softmax"]
    assert launch.local_size[1] == lanes
