"""Shared helpers of the OpenCL tests: the backend under test, skipping cleanly."""

from __future__ import annotations

import functools

import pytest


@functools.cache
def _device_or_reason() -> tuple[object | None, str]:
    from lightnet_graph.backends.opencl import select_device
    from lightnet_graph.backends.opencl.errors import NoOpenCLPlatformError

    try:
        return select_device(), ""
    except NoOpenCLPlatformError as error:
        return None, str(error)


def opencl_backend(**options: object):
    """The OpenCL backend on the default device; skip the test when there is none."""
    from lightnet_graph.backends.opencl import OpenCLBackend

    device, reason = _device_or_reason()
    if device is None:
        pytest.skip(f"no OpenCL device: {reason}")
    return OpenCLBackend(**options)
