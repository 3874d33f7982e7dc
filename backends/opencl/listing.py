"""A planned program's kernels, launches and host schedule as plain data.

Inspection tools read a program through these functions. They take the
schedule and buffer allocation that :func:`.backend.plan_program` returns,
so they work for a compiled :class:`.runtime.OpenCLExecutable` and equally
for a program planned for a device profile without any device present.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from lightnet_graph.executable import KernelInfo
from lightnet_graph.graph import Graph
from lightnet_graph.inspect_program import ProgramListing

from .backend import plan_program
from .device import DeviceProfile
from .memory import Allocation
from .plan import Options, Schedule
from .runtime import LaunchInfo


def plan_listing(
    graph: Graph,
    outputs: Mapping[str, int],
    profile: DeviceProfile,
    options: Options | None = None,
) -> ProgramListing:
    """Return the listing of the program a device with ``profile`` would run.

    ``graph`` is an optimized graph, such as a compiled program's ``graph``,
    and ``outputs`` its ``outputs``. No device or pyopencl is needed, so
    tests can pin the generated source for a fixed, made-up profile.
    """
    graph, _, schedule, allocation = plan_program(graph, outputs, profile, options)
    return ProgramListing(
        graph=graph.name,
        backend="opencl",
        device=profile.describe(),
        kernels=tuple(kernel_infos(schedule)),
        launches=tuple(launch_infos(schedule)),
        host=host_schedule(schedule, allocation),
    )


def launch_infos(schedule: Schedule) -> list[LaunchInfo]:
    """Return every kernel launch of one run, in order."""
    return [
        LaunchInfo(
            launch.kernel.name, launch.nodes, launch.global_size, launch.local_size
        )
        for launch in schedule.launches
    ]


def kernel_infos(schedule: Schedule) -> list[KernelInfo]:
    """Return each distinct kernel once, in order of its first launch.

    A kernel's nodes are those of all its launches, and its sizes are the
    first launch's; :attr:`.runtime.OpenCLExecutable.kernels` lists the same.
    """
    found: dict[str, dict[str, Any]] = {}
    for launch in schedule.launches:
        entry = found.setdefault(
            launch.kernel.name,
            {"launch": launch, "nodes": [], "launches": 0},
        )
        entry["launches"] += 1
        entry["nodes"].extend(n for n in launch.nodes if n not in entry["nodes"])
    infos = []
    for name, entry in found.items():
        first = entry["launch"]
        infos.append(
            KernelInfo(
                name,
                first.kernel.source,
                tuple(entry["nodes"]),
                entry["launches"],
                tuple(first.global_size),
                None if first.local_size is None else tuple(first.local_size),
            )
        )
    return infos


def host_schedule(schedule: Schedule, allocation: Allocation) -> dict[str, Any]:
    """Return the host's side of one run as JSON-ready data.

    ``buffers`` are the device buffers of the memory plan. Each entry of
    ``launches`` names its kernel, sizes, the graph nodes it computes and its
    arguments in order, each ``{"name", "buffer"}``, ``{"name", "int"}`` or
    ``{"name", "scalar", "dtype"}``. ``copies`` are the device-to-device
    copies that put new values into states and parameters after the run.
    """
    buffer_of = {
        key: allocation.plan.buffers[index].name
        for key, index in allocation.assignment.items()
    }
    launches = []
    for index, launch in enumerate(schedule.launches):
        names = parameter_names(launch.kernel.source, launch.kernel.name)
        if len(names) != len(launch.args):
            names = [f"arg{i}" for i in range(len(launch.args))]
        launches.append(
            {
                "index": index,
                "kernel": launch.kernel.name,
                "global_size": list(launch.global_size),
                "local_size": None
                if launch.local_size is None
                else list(launch.local_size),
                "nodes": list(launch.nodes),
                "args": [
                    _argument(name, arg, buffer_of)
                    for name, arg in zip(names, launch.args, strict=True)
                ],
            }
        )
    copies = [
        {
            "value": launch.nodes[0],
            "source": buffer_of[launch.copy[0]],
            "target": buffer_of[launch.copy[1]],
            "nbytes": launch.copy[2],
        }
        for launch in schedule.updates
    ]
    buffers = [
        {"name": info.name, "nbytes": info.nbytes, "values": list(info.values)}
        for info in allocation.plan.buffers
    ]
    return {"buffers": buffers, "launches": launches, "copies": copies}


def parameter_names(source: str, kernel: str) -> list[str]:
    """Return the parameter names of ``kernel`` in ``source``, in order."""
    match = re.search(
        rf"__kernel\b[^(]*\b{re.escape(kernel)}\s*\((.*?)\)\s*\{{", source, re.DOTALL
    )
    if match is None or not match.group(1).strip():
        return []
    return [
        re.findall(r"\w+", declaration)[-1] for declaration in match.group(1).split(",")
    ]


def _argument(name: str, arg: tuple, buffer_of: dict[Any, str]) -> dict[str, Any]:
    if arg[0] == "buffer":
        return {"name": name, "buffer": buffer_of[arg[1]]}
    if arg[0] == "int":
        return {"name": name, "int": int(arg[1])}
    value = arg[1].type(arg[2]).item()
    if isinstance(value, float) and not math.isfinite(value):
        # JSON has no literal for these; "nan", "inf" and "-inf" are strings.
        value = str(value)
    return {"name": name, "scalar": value, "dtype": arg[1].name}
