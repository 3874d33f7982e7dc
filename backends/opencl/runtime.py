"""The OpenCL executable: device buffers, the launch loop and inspection.

Parameters and states live on the device. ``parameters`` and ``states`` are
mappings that read a value back when it is asked for and upload it again
before the next run if it may have been changed, so the Executable
interface (get/set_parameters, get/set_states, ``parameters["w"][...] = v``)
keeps working. A run uploads the inputs, enqueues every launch, reads back
only the outputs asked for, then copies new values into the states and
parameters that the graph assigns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lightnet_graph.errors import InputValueError, LightnetError
from lightnet_graph.executable import Executable, KernelInfo, MemoryPlan
from lightnet_graph.graph import Graph
from lightnet_graph.ops import kernels as numpy_kernels

from .device import DeviceProfile
from .memory import Allocation
from .plan import Launch, Schedule

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchInfo:
    """One launch of the schedule: its kernel, the nodes it computes and its sizes."""

    kernel: str
    nodes: tuple[str, ...]
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None


@dataclass(frozen=True)
class KernelTime:
    """Profiling totals of one kernel over the profiled runs."""

    name: str
    launches: int  # per run
    total_s: float  # over all profiled runs
    mean_s: float  # per launch


@dataclass(frozen=True)
class Profile:
    """Per-kernel device times from OpenCL profiling events."""

    runs: int
    kernels: tuple[KernelTime, ...]  # slowest first
    total_s: float  # device time of all launches, per run

    def table(self) -> str:
        width = max([len("kernel")] + [len(k.name) for k in self.kernels])
        lines = [f"{'kernel':<{width}}  launches  total ms  mean us"]
        for k in self.kernels:
            lines.append(
                f"{k.name:<{width}}  {k.launches:8d}  {k.total_s * 1e3:8.3f}  "
                f"{k.mean_s * 1e6:7.1f}"
            )
        lines.append(f"device time per run: {self.total_s * 1e3:.3f} ms")
        return "\n".join(lines)


class DeviceValues(MutableMapping):
    """Named device buffers seen as NumPy arrays, synchronized on demand."""

    def __init__(
        self,
        owner: OpenCLExecutable,
        values: dict[str, np.ndarray],
        buffers: dict[str, Any],
    ) -> None:
        self._owner = owner
        self._host = values
        self._buffers = buffers
        self._stale: set[str] = set()  # the device has a newer value
        self._dirty: set[str] = set(values)  # the host may hold a newer value

    def __getitem__(self, name: str) -> np.ndarray:
        array = self._read(name)
        # The caller may change the array in place; upload it before the next run.
        self._dirty.add(name)
        return array

    def __setitem__(self, name: str, value: Any) -> None:
        current = self._host[name]
        array = np.array(value, dtype=current.dtype, copy=True)
        if array.shape != current.shape:
            raise InputValueError(
                f"{name!r} has shape {array.shape}, expected {current.shape}"
            )
        self._host[name] = array
        self._stale.discard(name)
        self._dirty.add(name)

    def __delitem__(self, name: str) -> None:
        raise TypeError("values of a compiled program cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(self._host)

    def __len__(self) -> int:
        return len(self._host)

    def snapshot(self) -> dict[str, np.ndarray]:
        """Copies of every value, read back without marking them changed."""
        return {name: self._read(name).copy() for name in self._host}

    def _read(self, name: str) -> np.ndarray:
        if name in self._stale:
            if name in self._dirty:
                raise AssertionError("a value cannot be newer on both sides")
            self._owner.read_buffer(self._buffers[name], self._host[name])
            self._stale.discard(name)
        return self._host[name]

    def upload(self) -> None:
        for name in sorted(self._dirty):
            self._owner.write_buffer(self._buffers[name], self._host[name])
        self._dirty.clear()

    def mark_updated(self, names: Sequence[str]) -> None:
        for name in names:
            if name in self._host:
                self._stale.add(name)
                self._dirty.discard(name)


class OpenCLExecutable(Executable):
    """A compiled program whose kernels run on one OpenCL device."""

    backend_name = "opencl"

    def __init__(
        self,
        graph: Graph,
        outputs: Mapping[str, int],
        stages: Mapping[str, Graph],
        device: Any,
        context: Any,
        queue: Any,
        profile: DeviceProfile,
        schedule: Schedule,
        allocation: Allocation,
        programs: dict[str, Any],
    ) -> None:
        super().__init__(graph, outputs, stages)
        import pyopencl as cl

        self._cl = cl
        self.device = device
        self.profile_of_device = profile
        self._context = context
        self._queue = queue
        self._schedule = schedule
        self._allocation = allocation
        self._programs = programs
        flags = cl.mem_flags.READ_WRITE
        self._buffers = [
            cl.Buffer(context, flags, size=b.nbytes) for b in allocation.buffers
        ]
        storages = schedule.storages
        self._storage_buffers = {
            key: self._buffers[i] for key, i in allocation.assignment.items()
        }
        self._kernels = {
            name: cl.Kernel(program, name) for name, program in programs.items()
        }
        self._prepared = [self._prepare(launch) for launch in schedule.launches]

        by_name = {
            storage.name: key
            for key, storage in storages.items()
            if storage.kind in ("parameter", "state", "input", "constant")
        }
        self._input_buffers = {
            name: self._storage_buffers[by_name[name]]
            for name in self.input_types
            if name in by_name
        }
        parameter_buffers = {
            name: self._storage_buffers[by_name[name]]
            for name in self.parameters
            if name in by_name
        }
        state_buffers = {
            name: self._storage_buffers[by_name[name]]
            for name in self.states
            if name in by_name
        }
        for key, storage in storages.items():
            if storage.kind == "constant":
                self.write_buffer(
                    self._storage_buffers[key],
                    np.ascontiguousarray(graph.nx.nodes[key]["value"]),
                )
        # Values that the optimized graph no longer reads stay on the host only.
        self.parameters = DeviceValues(
            self,
            {k: v for k, v in self.parameters.items() if k in parameter_buffers},
            parameter_buffers,
        )
        self.states = DeviceValues(
            self,
            {k: v for k, v in self.states.items() if k in state_buffers},
            state_buffers,
        )
        self._updated = [launch.nodes[0] for launch in schedule.updates]
        self.parameters.upload()
        self.states.upload()
        queue.finish()

    # -- buffers ----------------------------------------------------------------------

    def write_buffer(self, buffer: Any, array: np.ndarray) -> None:
        if array.nbytes:
            self._cl.enqueue_copy(
                self._queue, buffer, np.ascontiguousarray(array), is_blocking=True
            )

    def read_buffer(self, buffer: Any, array: np.ndarray) -> None:
        if array.nbytes:
            self._cl.enqueue_copy(self._queue, array, buffer, is_blocking=True)

    def _prepare(self, launch: Launch) -> tuple:
        values = []
        for arg in launch.args:
            if arg[0] == "buffer":
                values.append(self._storage_buffers[arg[1]])
            elif arg[0] == "int":
                values.append(np.int32(arg[1]))
            else:
                values.append(arg[1].type(arg[2]))
        kernel = self._kernels[launch.kernel.name]
        return kernel, values, launch.global_size, launch.local_size

    # -- running ------------------------------------------------------------------------

    def run(
        self,
        feeds: Mapping[str, Any] | None = None,
        /,
        *,
        fetch: Sequence[str] | None = None,
        **named: Any,
    ) -> dict[str, np.ndarray]:
        """Run the program and return the outputs named in ``fetch`` (all by default).

        Parameters and states assigned by the graph take their new values on
        the device; nothing else is read back.
        """
        outputs, _ = self._run(feeds, named, fetch, None)
        return outputs

    def _execute(self, inputs: dict[str, np.ndarray]) -> tuple[dict, dict]:
        outputs, _ = self._run(inputs, {}, None, None)
        return outputs, {}

    def _run(
        self,
        feeds: Mapping[str, Any] | None,
        named: Mapping[str, Any],
        fetch: Sequence[str] | None,
        events: list | None,
    ) -> tuple[dict, list | None]:
        cl = self._cl
        values = dict(feeds or {})
        values.update(named)
        bound = self.bind_inputs(values)
        names = list(self.outputs) if fetch is None else list(fetch)
        unknown = [name for name in names if name not in self._schedule.outputs]
        if unknown:
            raise InputValueError(
                f"{unknown[0]!r} is not an output of {self.graph.name!r}; its outputs are "
                f"{', '.join(repr(n) for n in self.outputs)}"
            )
        if self.check_numerics:
            self.find_nonfinite(bound)
        self._check_labels(bound)
        self.parameters.upload()
        self.states.upload()
        queue = self._queue
        for name, array in bound.items():
            if name in self._input_buffers and array.nbytes:
                cl.enqueue_copy(
                    queue, self._input_buffers[name], array, is_blocking=False
                )
        for (kernel, args, global_size, local_size), launch in zip(
            self._prepared, self._schedule.launches, strict=True
        ):
            try:
                event = cl.enqueue_nd_range_kernel(
                    queue, _with_args(kernel, args), global_size, local_size
                )
            except (cl.LogicError, cl.RuntimeError) as error:
                raise LightnetError(
                    f"OpenCL launch of kernel {launch.kernel.name} (computing "
                    f"{', '.join(launch.nodes[:3])}) failed: {error}"
                ) from None
            if events is not None:
                events.append((launch.kernel.name, event))
        outputs = {name: self._read_output(name) for name in names}
        for launch in self._schedule.updates:
            source, target, nbytes = launch.copy
            if nbytes:
                cl.enqueue_copy(
                    queue,
                    self._storage_buffers[target],
                    self._storage_buffers[source],
                    byte_count=nbytes,
                )
        queue.finish()
        self.parameters.mark_updated(self._updated)
        self.states.mark_updated(self._updated)
        return outputs, events

    def _read_output(self, name: str) -> np.ndarray:
        storage_key, view = self._schedule.outputs[name]
        storage = self._schedule.storages[storage_key]
        result = np.empty(view.shape, storage.dtype)
        if result.size == 0:
            return result
        buffer = self._storage_buffers[storage_key]
        itemsize = storage.dtype.itemsize
        if view.is_contiguous():
            self._cl.enqueue_copy(
                self._queue,
                result,
                buffer,
                src_offset=view.offset * itemsize,
                is_blocking=True,
            )
            return result
        # Read the span the view touches, then apply its strides on the host.
        low = view.offset + sum(
            s * (d - 1) for s, d in zip(view.strides, view.shape, strict=True) if s < 0
        )
        high = view.offset + sum(
            s * (d - 1) for s, d in zip(view.strides, view.shape, strict=True) if s > 0
        )
        span = np.empty(high - low + 1, storage.dtype)
        self._cl.enqueue_copy(
            self._queue, span, buffer, src_offset=low * itemsize, is_blocking=True
        )
        strided = np.lib.stride_tricks.as_strided(
            span[view.offset - low :],
            view.shape,
            tuple(s * itemsize for s in view.strides),
        )
        result[...] = strided
        return result

    def _check_labels(self, bound: Mapping[str, np.ndarray]) -> None:
        for check in self._schedule.label_checks:
            try:
                numpy_kernels.check_labels(bound[check.input], check.bound)
            except ValueError as error:
                where = f", declared at {check.location}" if check.location else ""
                raise InputValueError(
                    f"{error} (in {check.op} {check.value!r}{where})"
                ) from None

    # -- parameters and states -----------------------------------------------------------

    def get_parameters(self) -> dict[str, np.ndarray]:
        """Read every parameter back from the device."""
        return self.parameters.snapshot()

    def get_states(self) -> dict[str, np.ndarray]:
        return self.states.snapshot()

    # -- inspection ----------------------------------------------------------------------

    @property
    def schedule(self) -> list[LaunchInfo]:
        """Every launch of one run, in order."""
        return [
            LaunchInfo(
                launch.kernel.name, launch.nodes, launch.global_size, launch.local_size
            )
            for launch in self._schedule.launches
        ]

    @property
    def kernels(self) -> list[KernelInfo]:
        """Each distinct kernel once, with every node it computes and its launch count."""
        found: dict[str, dict] = {}
        for launch in self._schedule.launches:
            entry = found.setdefault(
                launch.kernel.name,
                {
                    "kernel": launch.kernel,
                    "nodes": [],
                    "launches": 0,
                    "global": launch.global_size,
                    "local": launch.local_size,
                },
            )
            entry["launches"] += 1
            entry["nodes"].extend(n for n in launch.nodes if n not in entry["nodes"])
        return [
            KernelInfo(
                name,
                e["kernel"].source,
                tuple(e["nodes"]),
                e["launches"],
                tuple(e["global"]),
                None if e["local"] is None else tuple(e["local"]),
            )
            for name, e in found.items()
        ]

    @property
    def source(self) -> str:
        """Every distinct kernel's source, then the host schedule."""
        kernels = self.kernels
        lines = [
            f"// lightnet-graph OpenCL program for graph {self.graph.name!r}: "
            f"{len(kernels)} kernels, {len(self._schedule.launches)} launches per run",
            f"// device: {self.profile_of_device.describe()}",
            "",
        ]
        for info in kernels:
            covered = ", ".join(info.nodes[:8]) + (
                ", ..." if len(info.nodes) > 8 else ""
            )
            lines.append(
                f"// kernel {info.name}: {info.launches} launches; computes {covered}"
            )
            lines.append(info.source)
        lines.append("// host schedule")
        for index, launch in enumerate(self._schedule.launches):
            lines.append(
                f"// {index:4d} {launch.kernel.name} global={launch.global_size} "
                f"local={launch.local_size}: {', '.join(launch.nodes)}"
            )
        for launch in self._schedule.updates:
            lines.append(
                f"//      copy the new value of {launch.nodes[0]!r} into place"
            )
        return "\n".join(lines) + "\n"

    def memory_plan(self) -> MemoryPlan:
        return self._allocation.plan

    def host_schedule(self) -> dict[str, Any]:
        """Return the buffers, launches with their arguments, and copies of one run.

        The data is JSON-ready; :func:`.listing.host_schedule` documents it.
        """
        from .listing import host_schedule  # listing imports this module

        return host_schedule(self._schedule, self._allocation)

    def profile(
        self, feeds: Mapping[str, Any] | None = None, repeat: int = 10, **named: Any
    ) -> Profile:
        """Run ``repeat`` times and total each kernel's device time from profiling events.

        The runs change states and parameters like any other run.
        """
        if repeat < 1:
            raise ValueError(f"repeat={repeat} must be at least 1")
        totals: dict[str, float] = {}
        counts: dict[str, int] = {}
        for _ in range(repeat):
            _, events = self._run(feeds, named, [], [])
            for name, event in events:
                seconds = (event.profile.end - event.profile.start) * 1e-9
                totals[name] = totals.get(name, 0.0) + seconds
                counts[name] = counts.get(name, 0) + 1
        kernels = tuple(
            sorted(
                (
                    KernelTime(
                        name,
                        counts[name] // repeat,
                        totals[name],
                        totals[name] / counts[name],
                    )
                    for name in totals
                ),
                key=lambda k: -k.total_s,
            )
        )
        return Profile(repeat, kernels, sum(totals.values()) / repeat)


def _with_args(kernel: Any, args: list) -> Any:
    kernel.set_args(*args)
    return kernel
