"""The memory plan: device buffers from liveness over the schedule.

Inputs, parameters, states and constants each keep a buffer of their own.
Every other storage (computed values and scratch space) is live from the
first launch that writes it to the last launch that reads it, or to the end
of the run for outputs. Walking the schedule in order, a storage takes the
smallest free buffer that fits, or a new one. A launch whose kernel reads
element i of an input only to write element i of its output may write into
the input's buffer when that read is the input's last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lightnet_graph.executable import BufferInfo, MemoryPlan

from .errors import DeviceMemoryError
from .plan import Schedule

MIN_BYTES = 8  # OpenCL buffers cannot be empty


@dataclass
class Buffer:
    index: int
    nbytes: int
    storages: list[Any] = field(default_factory=list)


@dataclass
class Allocation:
    buffers: list[Buffer]
    assignment: dict[Any, int]  # storage key -> buffer index
    plan: MemoryPlan


def plan_memory(schedule: Schedule) -> Allocation:
    storages = schedule.storages
    launches = schedule.launches + schedule.updates
    end = len(launches)
    first: dict[Any, int] = {}
    last: dict[Any, int] = {}
    for index, launch in enumerate(launches):
        for key in launch.writes:
            first.setdefault(key, index)
            last[key] = index
        for key in launch.reads:
            last[key] = index
    for key, _ in schedule.outputs.values():
        last[key] = end

    buffers: list[Buffer] = []
    assignment: dict[Any, int] = {}

    def new_buffer(key: Any) -> int:
        buffers.append(Buffer(len(buffers), max(storages[key].nbytes, MIN_BYTES)))
        return buffers[-1].index

    def assign(key: Any, index: int) -> None:
        assignment[key] = index
        buffers[index].storages.append(key)

    for key, storage in storages.items():
        if not storage.transient:
            assign(key, new_buffer(key))

    free: list[int] = []
    handed_over: set[Any] = set()
    for index, launch in enumerate(launches):
        for read, written in sorted(launch.in_place, key=repr):
            if written in assignment or first.get(written) != index:
                continue
            if read in handed_over or last.get(read) != index or read not in assignment:
                continue
            if not storages[read].transient:
                continue
            buffer = assignment[read]
            if buffers[buffer].nbytes >= storages[written].nbytes:
                assign(written, buffer)
                handed_over.add(read)
        for key in sorted(launch.writes, key=repr):
            if key in assignment or first.get(key) != index:
                continue
            need = max(storages[key].nbytes, MIN_BYTES)
            fitting = [b for b in free if buffers[b].nbytes >= need]
            if fitting:
                chosen = min(fitting, key=lambda b: (buffers[b].nbytes, b))
                free.remove(chosen)
                assign(key, chosen)
            else:
                assign(key, new_buffer(key))
        for key in sorted(launch.reads | launch.writes, key=repr):
            if (
                last.get(key) == index
                and storages[key].transient
                and key not in handed_over
            ):
                free.append(assignment[key])
        free.sort()

    for key in storages:
        if key not in assignment:
            # Written by no launch (an empty value): give it a buffer of its own.
            assign(key, new_buffer(key))

    infos = []
    for buffer in buffers:
        largest = max(buffer.storages, key=lambda k: storages[k].nbytes)
        names = tuple(name for k in buffer.storages for name in storages[k].values)
        infos.append(
            BufferInfo(
                f"buffer{buffer.index}",
                storages[largest].shape,
                storages[largest].dtype.name,
                buffer.nbytes,
                names,
            )
        )
    peak = sum(buffer.nbytes for buffer in buffers)
    without = sum(max(s.nbytes, MIN_BYTES) for s in storages.values())
    return Allocation(buffers, assignment, MemoryPlan(tuple(infos), peak, without))


def check_fits(
    allocation: Allocation,
    schedule: Schedule,
    max_alloc: int,
    global_mem: int,
    device: str,
) -> None:
    """Raise DeviceMemoryError before allocating when a buffer cannot fit."""
    storages = schedule.storages
    for buffer in allocation.buffers:
        if buffer.nbytes > max_alloc:
            key = max(buffer.storages, key=lambda k: storages[k].nbytes)
            storage = storages[key]
            raise DeviceMemoryError(
                f"value {storage.name!r} ({storage.dtype.name}{list(storage.shape)}) needs "
                f"{buffer.nbytes} bytes, but device {device} allows at most {max_alloc} bytes "
                "in one buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE); use a smaller batch or "
                "model, or a device with more memory"
            )
    total = allocation.plan.peak_bytes
    if total > global_mem:
        largest = max(storages.values(), key=lambda s: s.nbytes)
        raise DeviceMemoryError(
            f"the program needs {total} bytes of device memory in "
            f"{len(allocation.buffers)} buffers, but device {device} has {global_mem} bytes "
            f"(CL_DEVICE_GLOBAL_MEM_SIZE); the largest value is {largest.name!r} "
            f"({largest.nbytes} bytes); use a smaller batch or model"
        )
