"""The OpenCL backend: lower an optimized graph to kernels and run them.

``compile(..., backend="opencl")`` uses the device named by
``$LIGHTNET_OPENCL_DEVICE``, else the first GPU, else the first device.
``OpenCLBackend(device="0:1")`` or ``OpenCLBackend(device="pthread")``
picks one explicitly and can be passed as ``backend=``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lightnet_graph.graph import Graph

from .cache import ProgramCache, default_cache_dir
from .device import DeviceProfile, has_gpu, import_pyopencl, profile_of, select_device
from .errors import UnsupportedDTypeError, UnsupportedSizeError
from .kernels.common import INT_MAX
from .memory import Allocation, check_fits, plan_memory
from .plan import Options, Schedule, build_schedule
from .rewrite import group_unslice_sums, swap_transposed_products
from .runtime import OpenCLExecutable

logger = logging.getLogger(__name__)

# One context, queue and program cache per device, shared by every program
# compiled in this process, so a kernel is built once however often it is used.
_SESSIONS: dict[tuple, tuple[Any, Any, ProgramCache]] = {}


class OpenCLBackend:
    """Generates OpenCL C kernels and a host schedule, and runs them with pyopencl.

    ``device`` is "PLATFORM:DEVICE" or part of a device name; ``gpu_only``
    refuses CPU devices (the "auto" backend uses it). ``build_options`` are
    passed to the OpenCL compiler: none by default, so no fast-math unless
    asked for, e.g. "-cl-fast-relaxed-math". ``matmul`` forces the "tiled"
    or "blocked" matrix-product variant instead of choosing per device.
    ``store_binaries`` writes built programs to the cache folder
    (``cache_dir``, else $LIGHTNET_CACHE_DIR or the user's cache folder);
    by default every driver's are stored except PoCL's, which caches its
    own builds.
    """

    name = "opencl"

    def __init__(
        self,
        device: str | None = None,
        *,
        gpu_only: bool = False,
        build_options: str = "",
        matmul: str | None = None,
        cache_dir: str | Path | None = None,
        store_binaries: bool | None = None,
    ) -> None:
        if matmul not in (None, "tiled", "blocked"):
            raise ValueError(f"matmul={matmul!r}; use 'tiled', 'blocked' or None")
        self.device = device
        self.gpu_only = gpu_only
        self.build_options = build_options
        self.options = Options(matmul=matmul)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.store_binaries = store_binaries

    @staticmethod
    def gpu_available() -> bool:
        """True when pyopencl imports and some OpenCL platform has a GPU."""
        return has_gpu()

    def lower(
        self, graph: Graph, outputs: Mapping[str, int], stages: Mapping[str, Graph]
    ) -> OpenCLExecutable:
        import_pyopencl()
        device = select_device(self.device, gpu_only=self.gpu_only)
        profile = profile_of(device)
        check_supported(graph, profile)
        started = time.perf_counter()
        graph, outputs, schedule, allocation = plan_program(
            graph, outputs, profile, self.options
        )
        check_fits(
            allocation,
            schedule,
            profile.max_mem_alloc_size,
            profile.global_mem_size,
            profile.describe(),
        )
        context, queue, cache = self._session(device)
        kernels = {launch.kernel.name: launch.kernel for launch in schedule.launches}
        programs = cache.build_programs(list(kernels.values()))
        logger.debug(
            "opencl: %d launches of %d kernels planned and built in %.2f s",
            len(schedule.launches),
            len(programs),
            time.perf_counter() - started,
        )
        return OpenCLExecutable(
            graph,
            outputs,
            stages,
            device,
            context,
            queue,
            profile,
            schedule,
            allocation,
            programs,
        )

    def _session(self, device: Any) -> tuple[Any, Any, ProgramCache]:
        cl = import_pyopencl()
        directory = self.cache_dir or default_cache_dir()
        key = (device.int_ptr, self.build_options, directory, self.store_binaries)
        session = _SESSIONS.get(key)
        if session is None:
            context = cl.Context([device])
            queue = cl.CommandQueue(
                context, properties=cl.command_queue_properties.PROFILING_ENABLE
            )
            cache = ProgramCache(
                context, device, directory, self.build_options, self.store_binaries
            )
            session = _SESSIONS[key] = (context, queue, cache)
        return session


def plan_program(
    graph: Graph,
    outputs: Mapping[str, int],
    profile: DeviceProfile,
    options: Options | None = None,
) -> tuple[Graph, dict[str, int], Schedule, Allocation]:
    """Rewrite a copy of ``graph``, schedule its launches and plan their buffers.

    Planning needs only a device's profile, not the device, so inspection
    tools can show the program that a device with ``profile`` would run.
    Returns the rewritten graph, its outputs, the schedule and the buffers.
    """
    graph = graph.copy()
    outputs = swap_transposed_products(graph, outputs)
    group_unslice_sums(graph, outputs)
    schedule = build_schedule(graph, outputs, profile, options or Options())
    return graph, outputs, schedule, plan_memory(schedule)


def check_supported(graph: Graph, profile: DeviceProfile) -> None:
    """Raise for float64 without cl_khr_fp64, float16, and values too large to index."""
    for _, data in graph.nx.nodes(data=True):
        if data["type"].size > INT_MAX:
            raise UnsupportedSizeError(
                f"value {data['name']!r} ({data['type']}) has {data['type'].size} elements, "
                f"but the OpenCL backend indexes with 32-bit integers, so values must have "
                f"at most {INT_MAX}; split the value or use the NumPy backend"
            )
        dtype = data["type"].dtype
        if dtype == np.float64 and not profile.fp64:
            raise UnsupportedDTypeError(
                f"value {data['name']!r} is float64, but OpenCL device {profile.describe()} "
                "does not support double precision (it lacks the cl_khr_fp64 extension); "
                "compile the model with dtype='float32' or choose another device"
            )
        if dtype == np.float16:
            raise UnsupportedDTypeError(
                f"value {data['name']!r} is float16, which the OpenCL backend does not "
                "support; use float32"
            )
