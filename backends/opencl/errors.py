"""Errors of the OpenCL backend; each names the value or kernel and the fix."""

from __future__ import annotations

from lightnet_graph.errors import DTypeError, LightnetError

POCL_INSTALL = 'pip install "lightnet-graph[pocl]"'


class NoOpenCLPlatformError(LightnetError, RuntimeError):
    """pyopencl is missing, or no OpenCL platform or device was found."""


class DeviceNotFoundError(LightnetError, ValueError):
    """A device request matches none of the devices found."""


class KernelBuildError(LightnetError, RuntimeError):
    """The OpenCL compiler rejected a generated kernel."""


class DeviceMemoryError(LightnetError, MemoryError):
    """A buffer, or the whole memory plan, does not fit in device memory."""


class UnsupportedSizeError(LightnetError, ValueError):
    """A value has more elements than the backend's 32-bit indexing reaches."""


class UnsupportedDTypeError(DTypeError):
    """The device cannot compute in a dtype the graph uses (float64, float16)."""
