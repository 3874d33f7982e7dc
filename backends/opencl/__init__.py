"""The OpenCL backend: generated OpenCL C kernels run through pyopencl."""

from .backend import OpenCLBackend
from .device import DeviceProfile, has_gpu, select_device
from .runtime import OpenCLExecutable

__all__ = [
    "DeviceProfile",
    "OpenCLBackend",
    "OpenCLExecutable",
    "has_gpu",
    "select_device",
]
