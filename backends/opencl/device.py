"""Choosing an OpenCL device and reading the properties code generation needs.

Code generation reads a device only through a :class:`DeviceProfile`, so
tests can plan kernels for a GPU or a CPU they do not have by building a
profile by hand.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from .errors import POCL_INSTALL, DeviceNotFoundError, NoOpenCLPlatformError

logger = logging.getLogger(__name__)

DEVICE_ENV = "LIGHTNET_OPENCL_DEVICE"


@dataclass(frozen=True)
class DeviceProfile:
    """The properties of a device that kernel variants and limits depend on."""

    name: str
    kind: str  # "gpu", "cpu" or "accelerator"
    max_work_group_size: int
    max_work_item_sizes: tuple[int, ...]
    local_mem_size: int
    local_mem_dedicated: bool
    max_mem_alloc_size: int
    global_mem_size: int
    fp64: bool
    platform: str = ""
    vendor: str = ""
    version: str = ""
    driver_version: str = ""
    compute_units: int = 1

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def describe(self) -> str:
        return f"{self.name!r} ({self.kind}, {self.platform})"


def import_pyopencl() -> Any:
    """Import pyopencl, or raise NoOpenCLPlatformError saying how to install it."""
    try:
        import pyopencl
    except ImportError as error:
        raise NoOpenCLPlatformError(
            f"the OpenCL backend needs pyopencl, which failed to import ({error}); "
            f"install it with PoCL, an OpenCL driver for the CPU: {POCL_INSTALL}"
        ) from None
    return pyopencl


def list_devices() -> list[tuple[int, int, Any]]:
    """Return (platform index, device index, device) for every OpenCL device."""
    cl = import_pyopencl()
    try:
        platforms = cl.get_platforms()
    except (cl.LogicError, cl.RuntimeError) as error:
        logger.debug("clGetPlatformIDs failed: %s", error)
        platforms = []
    devices = []
    for p, platform in enumerate(platforms):
        try:
            found = platform.get_devices()
        except (cl.LogicError, cl.RuntimeError) as error:
            logger.debug("platform %r lists no devices: %s", platform.name, error)
            continue
        devices.extend((p, d, device) for d, device in enumerate(found))
    if not devices:
        raise NoOpenCLPlatformError(
            "no OpenCL platform with a device was found; install a driver for your "
            f"GPU, or PoCL, an OpenCL driver for the CPU: {POCL_INSTALL}"
        )
    return devices


def has_gpu() -> bool:
    """True when pyopencl imports and some platform has a GPU device."""
    try:
        cl = import_pyopencl()
        return any(device.type & cl.device_type.GPU for _, _, device in list_devices())
    except NoOpenCLPlatformError:
        return False


def select_device(request: str | None = None, gpu_only: bool = False) -> Any:
    """Return the device named by ``request``, ``$LIGHTNET_OPENCL_DEVICE`` or the default.

    A request is "PLATFORM:DEVICE" (indices, as ``lightnet-graph devices``
    would list them) or part of a device or platform name, matched without
    case. The default is the first GPU, else the first device; with
    ``gpu_only`` there is no fallback to other devices.
    """
    cl = import_pyopencl()
    devices = list_devices()
    request = request if request is not None else os.environ.get(DEVICE_ENV) or None
    if request is None:
        gpus = [d for _, _, d in devices if d.type & cl.device_type.GPU]
        if gpus:
            return gpus[0]
        if gpu_only:
            raise DeviceNotFoundError(
                f"no OpenCL GPU was found among: {_describe(devices)}; "
                f"pick a device with {DEVICE_ENV} or device="
            )
        return devices[0][2]
    text = request.strip()
    parts = text.split(":")
    if len(parts) == 2 and all(part.strip().isdigit() for part in parts):
        wanted = (int(parts[0]), int(parts[1]))
        for p, d, device in devices:
            if (p, d) == wanted:
                return device
        raise DeviceNotFoundError(
            f"OpenCL device {text!r} (platform {wanted[0]}, device {wanted[1]}) does not "
            f"exist; the devices are: {_describe(devices)}"
        )
    lowered = text.lower()
    for _, _, device in devices:
        if lowered in device.name.lower() or lowered in device.platform.name.lower():
            return device
    raise DeviceNotFoundError(
        f"no OpenCL device name contains {text!r}; the devices are: {_describe(devices)}"
    )


def _describe(devices: list[tuple[int, int, Any]]) -> str:
    return "; ".join(f"{p}:{d} {device.name.strip()!r}" for p, d, device in devices)


def profile_of(device: Any) -> DeviceProfile:
    """Read a device's profile through pyopencl."""
    cl = import_pyopencl()
    if device.type & cl.device_type.GPU:
        kind = "gpu"
    elif device.type & cl.device_type.CPU:
        kind = "cpu"
    else:
        kind = "accelerator"
    return DeviceProfile(
        name=device.name.strip(),
        kind=kind,
        max_work_group_size=int(device.max_work_group_size),
        max_work_item_sizes=tuple(int(s) for s in device.max_work_item_sizes),
        local_mem_size=int(device.local_mem_size),
        local_mem_dedicated=device.local_mem_type == cl.device_local_mem_type.LOCAL,
        max_mem_alloc_size=int(device.max_mem_alloc_size),
        global_mem_size=int(device.global_mem_size),
        fp64="cl_khr_fp64" in device.extensions.split(),
        platform=device.platform.name.strip(),
        vendor=device.vendor.strip(),
        version=device.version.strip(),
        driver_version=device.driver_version.strip(),
        compute_units=int(device.max_compute_units),
    )
