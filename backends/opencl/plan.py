"""Lowering an analyzed graph to a schedule of kernel launches.

The schedule lists every launch of one run in order, each with its kernel,
its arguments (storages, sizes, offsets and strides) and the graph nodes it
computes. Storages are logical: one per value that owns memory, plus scratch
space. The memory plan (:mod:`.memory`) later maps them to device buffers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightnet_graph.graph import CONSTANT, INPUT, PARAMETER, STATE, Graph

from . import views
from .analysis import ABSORBED, ASSEMBLE, HEAVY, VIEW, Analysis
from .device import DeviceProfile
from .fusion import analyze
from .kernels import pointwise
from .kernels.common import KernelSource
from .lowering import WholeKernels
from .views import View

logger = logging.getLogger(__name__)

LEAF_KINDS = {
    INPUT: "input",
    PARAMETER: "parameter",
    STATE: "state",
    CONSTANT: "constant",
}


@dataclass
class Storage:
    """A logical piece of device memory."""

    key: Any  # a graph node id, or ("scratch", n)
    shape: tuple[int, ...]
    dtype: np.dtype
    kind: str  # input, parameter, state, constant, value or scratch
    name: str
    values: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def transient(self) -> bool:
        return self.kind in ("value", "scratch")


@dataclass
class Launch:
    """One kernel launch, or one device-to-device copy (``kernel`` None)."""

    kernel: KernelSource | None
    args: list
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None
    nodes: tuple[str, ...]
    reads: set = field(default_factory=set)
    writes: set = field(default_factory=set)
    # (read storage, written storage) pairs that may share one buffer.
    in_place: set = field(default_factory=set)
    copy: tuple | None = None  # (source storage, target storage, nbytes)


@dataclass
class LabelCheck:
    """An integer input that indexes a table, checked on the host before upload."""

    input: str
    bound: int
    op: str
    value: str
    location: Any


@dataclass
class Schedule:
    """Every launch of one run, the storages they use and where outputs are read."""

    launches: list[Launch]
    updates: list[Launch]
    storages: dict[Any, Storage]
    outputs: dict[str, tuple[Any, View]]
    label_checks: list[LabelCheck]
    analysis: Analysis


@dataclass(frozen=True)
class Options:
    """Lowering choices that tests and benchmarks may override."""

    matmul: str | None = None  # "tiled" or "blocked"; None chooses per device
    reduce_group: int = 256


def build_schedule(
    graph: Graph,
    outputs: Mapping[str, int],
    profile: DeviceProfile,
    options: Options = Options(),
) -> Schedule:
    """Analyze ``graph`` and lower it to launches for a device with ``profile``.

    The analysis may add copies of cheap elementwise ops to ``graph``, so
    pass a graph that the caller owns (the backend passes its own copy).
    """
    a = analyze(graph, outputs)
    planner = _Planner(a, profile, options)
    return planner.run(outputs)


class _Planner(WholeKernels):
    """Turns the analyzed nodes into launches, kernel by kernel in level order."""

    def __init__(self, a: Analysis, profile: DeviceProfile, options: Options) -> None:
        self.a = a
        self.graph = a.graph
        self.nodes = a.graph.nx.nodes
        self.profile = profile
        self.options = options
        self.storages: dict[Any, Storage] = {}
        self.launches: list[Launch] = []
        self.label_checks: list[LabelCheck] = []
        self._scratch = 0
        self._stats_cache: dict[tuple, Any] = {}
        self._absorbed: dict[int, list[int]] = {}
        for alias, heavy in a.alias.items():
            self._absorbed.setdefault(heavy, []).append(alias)
        group = 1
        limit = min(options.reduce_group, profile.max_work_group_size)
        while group * 2 <= limit:
            group *= 2
        self.group = group

    # -- the schedule ---------------------------------------------------------------

    def run(self, outputs: Mapping[str, int]) -> Schedule:
        a = self.a
        for node in a.order:
            if a.kind[node] == "leaf":
                self._leaf_storage(node)
        for kind, _, item in self._units():
            if kind == "cluster":
                self._cluster(item)
            elif kind == "fill":
                self._fill(item)
            elif a.kind[item] == ASSEMBLE:
                self._assembly(item)
            else:
                self._heavy(item)
        updates = self._updates()
        resolved = {name: self.resolve(node) for name, node in outputs.items()}
        for name, (storage, _) in resolved.items():
            self.storages[storage].values.append(f"output {name}")
        # Scalar constants travel as kernel arguments; drop their unused buffers.
        used = {key for launch in self.launches + updates for key in launch.reads}
        used |= {storage for storage, _ in resolved.values()}
        for key in [k for k, v in self.storages.items() if v.kind == "constant"]:
            if key not in used:
                del self.storages[key]
        return Schedule(
            self.launches, updates, self.storages, resolved, self.label_checks, a
        )

    def _units(self) -> list[tuple[str, tuple, Any]]:
        a = self.a
        units = []
        for cluster in a.clusters:
            first = min(a.position[m] for m in cluster)
            units.append(("cluster", (a.level[cluster[0]], first), cluster))
        for node in a.order:
            if a.kind[node] in (HEAVY, ASSEMBLE):
                units.append(("node", (a.level[node], a.position[node]), node))
        for node, assembly in a.assemblies.items():
            if assembly.covered:
                continue
            levels = [
                a.level[a.unit(p.node)]
                for p in assembly.pieces
                if p.placed and a.unit(p.node) is not None
            ]
            level = min(levels) if levels else a.level[node]
            units.append(("fill", (level, -1, a.position[node]), node))
        units.sort(key=lambda unit: unit[1])
        return units

    # -- storages -----------------------------------------------------------------

    def _leaf_storage(self, node: int) -> None:
        data = self.nodes[node]
        ttype = data["type"]
        self.storages[node] = Storage(
            node,
            ttype.shape,
            ttype.dtype,
            LEAF_KINDS[data["kind"]],
            data["name"],
            [data["name"]],
        )

    def storage(self, node: int) -> tuple[Any, View]:
        """Return the storage and view that the computed value ``node`` is written to."""
        root, view = self.a.storage_view(node)
        if root not in self.storages:
            data = self.nodes[root]
            self.storages[root] = Storage(
                root, data["type"].shape, data["type"].dtype, "value", data["name"]
            )
        name = self.nodes[node]["name"]
        if name not in self.storages[root].values:
            self.storages[root].values.append(name)
        return root, view

    def resolve(self, node: int) -> tuple[Any, View]:
        root, view = self.a.resolve(node)
        if root not in self.storages:
            self.storage(root)
        return root, view

    def scratch(self, shape: tuple[int, ...], dtype: Any, name: str) -> Any:
        key = ("scratch", self._scratch)
        self._scratch += 1
        self.storages[key] = Storage(
            key, tuple(shape), np.dtype(dtype), "scratch", name, [name]
        )
        return key

    def output_offset(self, node: int) -> tuple[Any, int]:
        storage, view = self.storage(node)
        assert view.is_contiguous(), "whole kernels write contiguous regions"
        return storage, view.offset

    def launch(
        self,
        kernel: KernelSource,
        args: list,
        global_size: tuple,
        local_size: tuple | None,
        nodes: list[int] | tuple[str, ...],
        writes: set,
        in_place: set | None = None,
    ) -> None:
        names = tuple(self.nodes[n]["name"] if isinstance(n, int) else n for n in nodes)
        reads = {arg[1] for arg in args if arg[0] == "buffer"} - set(writes)
        self.launches.append(
            Launch(
                kernel,
                args,
                global_size,
                local_size,
                names,
                reads,
                set(writes),
                in_place or set(),
            )
        )

    def elementwise_sizes(self, n: int) -> tuple[tuple, tuple]:
        local = min(64, self.profile.max_work_group_size)
        return (-(-max(n, 1) // local) * local,), (local,)

    # -- elementwise clusters -------------------------------------------------------

    def _cluster(self, members: list[int]) -> None:
        a = self.a
        member_set = set(members)
        writes: dict[int, tuple[Any, View]] = {}
        for member in members:
            if self._leaves_cluster(member, member_set):
                writes[member] = self.storage(member)
        for member in members:
            self._note_label_inputs(member)
        kernel, args, n = pointwise.cluster_kernel(a, members, writes)
        if n == 0:
            return
        written = {storage for storage, _ in writes.values()}
        # A buffer read only at element i may become the buffer written at i.
        linear = self._linear_reads(members, member_set, n)
        in_place = {
            (read, storage)
            for storage, view in writes.values()
            if view.is_identity(self._size(storage))
            for read, only_linear in linear.items()
            if only_linear and read not in written
        }
        global_size, local_size = self.elementwise_sizes(n)
        self.launch(kernel, args, global_size, local_size, members, written, in_place)

    def _size(self, storage: Any) -> int:
        return self.storages[storage].size

    def _leaves_cluster(self, member: int, cluster: set[int]) -> bool:
        a = self.a
        if member in a.roots or member in a.placement:
            return True
        stack = list(self.a.consumers[member])
        while stack:
            consumer = stack.pop()
            if consumer in a.roots:
                return True
            kind = a.kind[consumer]
            if kind == VIEW:
                stack.extend(self.a.consumers[consumer])
            elif kind == ABSORBED or consumer not in cluster:
                return True
            elif (member, consumer) not in a.fusible:
                return True
        return False

    def _linear_reads(self, members: list[int], cluster: set[int], n: int) -> dict:
        """For each storage the cluster loads: True when it only reads element i of it."""
        a = self.a
        linear: dict[Any, bool] = {}
        for member in members:
            op = self.nodes[member]["op"]
            shape = self.nodes[member]["type"].shape
            for operand in a.operands[member]:
                base = a.ref[operand][0]
                if base in cluster and (base, member) in a.fusible:
                    continue
                root, view = a.resolve(operand)
                size = self._size(root)
                whole = (
                    op.name not in ("one_hot", "gather", "unslice")
                    and tuple(view.shape) == tuple(shape)
                    and size == n
                    and view.is_identity(size)
                )
                linear[root] = linear.get(root, True) and whole
        return linear

    def _note_label_inputs(self, node: int) -> None:
        op = self.nodes[node]["op"]
        operands = self.a.operands[node]
        if op.name == "one_hot":
            self._label_check(operands[0], op.depth, node)
        elif op.name == "gather":
            self._label_check(
                operands[1], self.nodes[operands[0]]["type"].shape[0], node
            )

    def _label_check(self, operand: int, bound: int, node: int) -> None:
        base = self.a.ref[operand][0]
        if self.nodes[base]["kind"] == INPUT:
            data = self.nodes[node]
            self.label_checks.append(
                LabelCheck(
                    self.nodes[base]["name"],
                    bound,
                    data["op"].name,
                    data["name"],
                    data["location"],
                )
            )

    # -- assemblies -----------------------------------------------------------------

    def _fill(self, node: int) -> None:
        storage, view = self.storage(node)
        kernel, args, n = pointwise.fill_kernel(
            self.nodes[node]["type"].dtype, (storage, view)
        )
        if n:
            global_size, local_size = self.elementwise_sizes(n)
            self.launch(kernel, args, global_size, local_size, [node], {storage})

    def _assembly(self, node: int) -> None:
        a = self.a
        assembly = a.assemblies[node]
        storage, view = self.storage(node)
        dtype = self.nodes[node]["type"].dtype
        for piece in assembly.pieces:
            if piece.placed:
                continue
            source = self.resolve(piece.node)
            region = views.index(view, piece.items)
            kernel, args, n = pointwise.copy_kernel(dtype, source, (storage, region))
            if n:
                global_size, local_size = self.elementwise_sizes(n)
                self.launch(
                    kernel,
                    args,
                    global_size,
                    local_size,
                    [node] + list(assembly.members),
                    {storage},
                )

    # -- state and parameter updates -------------------------------------------------

    def _updates(self) -> list[Launch]:
        """Copies of the new values into their states, run after the outputs are read."""
        copies = []
        for target, value in self.graph.updates.items():
            storage, view = self.resolve(value)
            size = int(np.prod(self.storages[storage].shape, dtype=np.int64))
            if not self.storages[storage].transient or not view.is_identity(size):
                dtype = self.nodes[value]["type"].dtype
                name = f"new value of {self.nodes[target]['name']}"
                copy_target = self.scratch(view.shape, dtype, name)
                kernel, args, n = pointwise.copy_kernel(
                    dtype, (storage, view), (copy_target, views.contiguous(view.shape))
                )
                if n:
                    global_size, local_size = self.elementwise_sizes(n)
                    self.launch(
                        kernel, args, global_size, local_size, (name,), {copy_target}
                    )
                storage = copy_target
            nbytes = self.storages[target].nbytes
            copies.append(
                Launch(
                    None,
                    [],
                    (),
                    None,
                    (self.nodes[target]["name"],),
                    {storage},
                    {target},
                    set(),
                    (storage, target, nbytes),
                )
            )
        return copies
