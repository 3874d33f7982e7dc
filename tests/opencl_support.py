"""Shared helpers of the OpenCL tests: the backend under test, skipping cleanly.

Without a usable OpenCL device the tests skip, unless the environment sets
LIGHTNET_REQUIRE_OPENCL=1 (as .ci/run does): then they fail, so a broken
driver cannot pass CI as a row of skips.
"""

from __future__ import annotations

import functools
import os

import pytest


@functools.cache
def _device_or_reason() -> tuple[object | None, str]:
    try:
        import pyopencl as cl
    except ImportError:
        return None, "pyopencl is not installed; pip install 'lightnet-graph[pocl]'"
    from lightnet_graph.backends.opencl import select_device
    from lightnet_graph.backends.opencl.errors import NoOpenCLPlatformError

    try:
        device = select_device()
    except NoOpenCLPlatformError as error:
        return None, str(error)
    # Some driver builds cannot compile any kernel on some CPUs (PoCL 3.0
    # from PyPI, built on LLVM 14, rejects AMD Zen 5 with "unknown target
    # CPU 'generic'"), so probe with a trivial program.
    try:
        context = cl.Context([device])
        cl.Program(context, "__kernel void probe(__global float *a) { a[0] = 1.0f; }").build()
    except cl.Error as error:
        first_line = str(error).strip().splitlines()[0]
        return None, f"the OpenCL driver of {device.name!r} cannot build kernels: {first_line}"
    return device, ""


def require_opencl() -> None:
    """Skip the calling test without a usable OpenCL device (fail if one is required)."""
    device, reason = _device_or_reason()
    if device is None:
        if os.environ.get("LIGHTNET_REQUIRE_OPENCL") == "1":
            pytest.fail(f"LIGHTNET_REQUIRE_OPENCL=1 but there is no usable OpenCL device: {reason}")
        pytest.skip(f"no usable OpenCL device: {reason}")


def opencl_backend(**options: object):
    """The OpenCL backend on the default device; skip the test when there is none."""
    from lightnet_graph.backends.opencl import OpenCLBackend

    require_opencl()
    return OpenCLBackend(**options)


def import_pyopencl():
    """Return the pyopencl module; skip (or fail, if required) without it."""
    if os.environ.get("LIGHTNET_REQUIRE_OPENCL") == "1":
        import pyopencl

        return pyopencl
    return pytest.importorskip("pyopencl")


def fake_profile(
    kind: str, max_group: int = 256, local_mem: int = 32 * 1024, compute_units: int = 1
):
    """Return a DeviceProfile of an imagined "cpu" or "gpu" device, for planning only."""
    from lightnet_graph.backends.opencl.device import DeviceProfile

    return DeviceProfile(
        name=f"fake {kind}",
        kind=kind,
        max_work_group_size=max_group,
        max_work_item_sizes=(max_group, max_group, 64),
        local_mem_size=local_mem,
        local_mem_dedicated=kind == "gpu",
        max_mem_alloc_size=2**30,
        global_mem_size=2**32,
        fp64=True,
        compute_units=compute_units,
    )
