"""Lowering an analyzed graph to a schedule of kernel launches.

The schedule lists every launch of one run in order, each with its kernel,
its arguments (storages, sizes, offsets and strides) and the graph nodes it
computes. Storages are logical: one per value that owns memory, plus scratch
space; the memory plan (:mod:`.memory`) later maps them to device buffers.
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
from .analysis import ABSORBED, ASSEMBLE, HEAVY, VIEW, Analysis, analyze
from .device import DeviceProfile
from .kernels import batchnorm, matmul, pointwise, reduce, scatter
from .kernels.common import KernelSource
from .kernels.matmul import Layout
from .views import Access, View

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
    """Analyze ``graph`` and lower it to launches for a device with ``profile``."""
    a = analyze(graph, outputs)
    planner = _Planner(a, profile, options)
    return planner.run(outputs)


class _Planner:
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
        """The storage and view where the computed value ``node`` is written."""
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

    # -- whole kernels ----------------------------------------------------------------

    def _heavy(self, node: int) -> None:
        name = self.nodes[node]["op"].name
        handler = {
            "matmul": self._matmul,
            "linear": self._linear,
            "sum": self._reduction,
            "mean": self._reduction,
            "max": self._reduction,
            "sum_to": self._reduction,
            "softmax": self._softmax,
            "softmax_cross_entropy": self._cross_entropy,
            "batch_norm": self._batch_norm,
            "batch_norm_grad": self._batch_norm_grad,
            "scatter_add": self._scatter_add,
        }[name]
        handler(node)

    def _covered(self, node: int) -> list[int]:
        """The node and the ops it absorbed, for inspection."""
        return [node] + self._absorbed.get(node, [])

    def _addend(self, node: int, shape: tuple) -> tuple[Any, View] | None:
        if node not in self.a.addend:
            return None
        storage, view = self.resolve(self.a.addend[node])
        return storage, views.broadcast(view, shape)

    def _matmul(self, node: int) -> None:
        left, right = self.a.operands[node]
        out_shape = self.nodes[node]["type"].shape
        a_view = self.resolve(left)
        b_view = self.resolve(right)
        batch = out_shape[:-2]
        a_full = (a_view[0], views.broadcast(a_view[1], batch + a_view[1].shape[-2:]))
        b_full = (b_view[0], views.broadcast(b_view[1], batch + b_view[1].shape[-2:]))
        self._emit_matmul(node, a_full, b_full, self._addend(node, out_shape))

    def _linear(self, node: int) -> None:
        x, w, b = self.a.operands[node]
        x_storage, x_view = self.resolve(x)
        rows = int(np.prod(x_view.shape[:-1], dtype=np.int64))
        flat = views.reshape(x_view, (rows, x_view.shape[-1]))
        if flat is None:
            x_storage, copied = self._materialize(x_storage, x_view, "linear input")
            flat = views.reshape(copied, (rows, x_view.shape[-1]))
        w_storage, w_view = self.resolve(w)
        b_storage, b_view = self.resolve(b)
        out_features = w_view.shape[0]
        bias = (b_storage, views.broadcast(b_view, (rows, out_features)))
        self._emit_matmul(
            node,
            (x_storage, flat),
            (w_storage, views.permute(w_view, (1, 0))),
            bias,
            (rows, out_features),
        )

    def _materialize(self, storage: Any, view: View, name: str) -> tuple[Any, View]:
        """Copy a view into contiguous scratch, for kernels that need that layout."""
        dtype = self.storages[storage].dtype
        target = self.scratch(view.shape, dtype, f"copy of {name}")
        kernel, args, n = pointwise.copy_kernel(
            dtype, (storage, view), (target, views.contiguous(view.shape))
        )
        global_size, local_size = self.elementwise_sizes(n)
        self.launch(
            kernel, args, global_size, local_size, (f"copy of {name}",), {target}
        )
        return target, views.contiguous(view.shape)

    def _emit_matmul(
        self,
        node: int,
        a_op: tuple[Any, View],
        b_op: tuple[Any, View],
        addend: tuple[Any, View] | None,
        out_shape: tuple | None = None,
    ) -> None:
        out_storage, out_offset = self.output_offset(node)
        out_shape = out_shape or self.nodes[node]["type"].shape
        dtype = self.nodes[node]["type"].dtype
        m, k_size = a_op[1].shape[-2:]
        n = b_op[1].shape[-1]
        if m * n == 0:
            return
        la, a_op = self._matrix(a_op, "k", m, k_size, "matmul operand")
        lb, b_op = self._matrix(b_op, "n", k_size, n, "matmul operand", b=True)
        variant = matmul.choose_variant(self.profile, dtype, self.options.matmul)
        layout = Layout(la, lb, addend is not None)
        c_view = views.contiguous(out_shape, out_offset)
        operands = {"a": a_op, "b": b_op, "c": (out_storage, c_view)}
        if addend is not None:
            operands["x"] = addend
        batch_shape = out_shape[:-2]
        # Coalesce the batch axes of all operands together; loop over any left.
        batch_strides = {key: view.strides[:-2] for key, (_, view) in operands.items()}
        dims: list[int] = []
        strides: dict[str, list[int]] = {key: [] for key in operands}
        for axis, dim in enumerate(batch_shape):
            if dim == 1:
                continue
            if dims and all(
                strides[key][-1] == batch_strides[key][axis] * dim for key in operands
            ):
                dims[-1] *= dim
                for key in operands:
                    strides[key][-1] = batch_strides[key][axis]
            else:
                dims.append(dim)
                for key in operands:
                    strides[key].append(batch_strides[key][axis])
        inner = dims[-1] if dims else 1
        outer_dims = dims[:-1]
        for outer in np.ndindex(*outer_dims) if outer_dims else [()]:
            sizes = {"M": m, "N": n, "K": k_size}
            for key, (_, view) in operands.items():
                offset = view.offset + sum(
                    i * s for i, s in zip(outer, strides[key][:-1], strict=True)
                )
                sizes[f"{key}_off"] = offset
                sizes[f"{key}_bs"] = strides[key][-1] if dims else 0
                if key != "c":
                    sizes[f"{key}_rs"], sizes[f"{key}_cs"] = view.strides[-2:]
            sizes["a_rs"], sizes["a_cs"] = self._normalized_strides(a_op[1], la)
            sizes["b_rs"], sizes["b_cs"] = self._normalized_strides(
                b_op[1], "kb" if lb == "k" else "n"
            )
            kernel, args = matmul.matmul_kernel(
                variant,
                layout,
                dtype,
                {key: value[0] for key, value in operands.items()},
                sizes,
            )
            global_size = matmul.global_size(variant, m, n, inner)
            in_place = set()
            if (
                addend is not None
                and addend[1].is_identity(
                    int(np.prod(self.storages[addend[0]].shape, dtype=np.int64))
                )
                and addend[0] not in (a_op[0], b_op[0])
                and c_view.is_identity(
                    int(np.prod(self.storages[out_storage].shape, dtype=np.int64))
                )
            ):
                in_place.add((addend[0], out_storage))
            self.launch(
                kernel,
                args,
                global_size,
                variant.local + (1,),
                self._covered(node),
                {out_storage},
                in_place,
            )

    def _matrix(
        self,
        operand: tuple[Any, View],
        other: str,
        rows: int,
        cols: int,
        name: str,
        b: bool = False,
    ) -> tuple[str, tuple[Any, View]]:
        """The contiguous axis of a matrix operand, copying it if it has none."""
        storage, view = operand
        rs, cs = view.strides[-2:]
        if b:
            if rs == 1 or rows <= 1:
                return "k", operand
            if cs == 1 or cols <= 1:
                return "n", operand
        else:
            if cs == 1 or cols <= 1:
                return "k", operand
            if rs == 1 or rows <= 1:
                return "m", operand
        return ("n" if b else "k"), self._materialize(storage, view, name)

    @staticmethod
    def _normalized_strides(view: View, layout: str) -> tuple[int, int]:
        """Row and column strides, with the contiguous axis's stride set to 1.

        The layout may rest on an axis of size 1, whose stride is arbitrary.
        """
        rs, cs = view.strides[-2:]
        return (1, cs) if layout in ("m", "kb") else (rs, 1)

    def _split(
        self, view: View, reduced: tuple[int, ...]
    ) -> tuple[Access, Access, int, int]:
        kept = [axis for axis in range(len(view.shape)) if axis not in reduced]
        outer = View(
            tuple(view.shape[i] for i in kept),
            tuple(view.strides[i] for i in kept),
            view.offset,
        )
        inner = View(
            tuple(view.shape[i] for i in reduced),
            tuple(view.strides[i] for i in reduced),
            0,
        )
        return views.access(outer), views.access(inner), outer.size, inner.size

    def _reduction(self, node: int) -> None:
        op = self.nodes[node]["op"]
        (x,) = self.a.operands[node]
        storage, view = self.resolve(x)
        if op.name == "sum_to":
            lead = len(view.shape) - len(op.shape)
            reduced = tuple(range(lead)) + tuple(
                lead + i
                for i, d in enumerate(op.shape)
                if d == 1 and view.shape[lead + i] != 1
            )
        else:
            reduced = op.axes(len(view.shape))
        outer, inner, outputs, count = self._split(view, reduced)
        if outputs == 0:
            return
        out = self.output_offset(node)
        out_shape = self.nodes[node]["type"].shape
        addend = self._addend(node, out_shape)
        addend_access = None if addend is None else (addend[0], views.access(addend[1]))
        kind = "max" if op.name == "max" else "sum"
        kernel, args = reduce.reduce_kernel(
            kind,
            self.nodes[node]["type"].dtype,
            self.group,
            (storage, outer, inner),
            out,
            outputs,
            count,
            count if op.name == "mean" else self.a.divisor.get(node),
            addend_access,
        )
        global_size, local_size = reduce.launch_shape(
            outputs, count, self.group, self.profile.max_work_item_sizes[0]
        )
        self.launch(
            kernel,
            args,
            global_size,
            local_size,
            self._covered(node),
            {out[0]},
            self._addend_in_place(addend, out),
        )

    def _addend_in_place(
        self, addend: tuple[Any, View] | None, out: tuple[Any, int]
    ) -> set:
        if addend is None:
            return set()
        size = int(np.prod(self.storages[addend[0]].shape, dtype=np.int64))
        out_size = int(np.prod(self.storages[out[0]].shape, dtype=np.int64))
        if addend[1].is_identity(size) and out[1] == 0 and size == out_size:
            return {(addend[0], out[0])}
        return set()

    def _softmax(self, node: int) -> None:
        op = self.nodes[node]["op"]
        (x,) = self.a.operands[node]
        storage, view = self.resolve(x)
        out_storage, out_view = self.storage(node)
        outer, inner, rows, length = self._split(view, (op.axis,))
        out_outer, out_inner, _, _ = self._split(out_view, (op.axis,))
        if rows * length == 0:
            return
        dtype = self.nodes[node]["type"].dtype
        kernel, args = reduce.softmax_kernel(
            dtype,
            self.group,
            (storage, outer, inner),
            (out_storage, out_outer, out_inner),
            rows,
            length,
        )
        global_size, local_size = reduce.launch_shape(
            rows, length, self.group, self.profile.max_work_item_sizes[0]
        )
        self.launch(kernel, args, global_size, local_size, [node], {out_storage})

    def _cross_entropy(self, node: int) -> None:
        op = self.nodes[node]["op"]
        logits, labels = self.a.operands[node]
        dtype = self.nodes[node]["type"].dtype
        storage, view = self.resolve(logits)
        label_storage, label_view = self.resolve(labels)
        self._label_check(labels, view.shape[-1], node)
        outer, inner, rows, classes = self._split(view, (len(view.shape) - 1,))
        out = self.output_offset(node)
        losses = self.scratch(
            (max(rows, 1),), dtype, f"losses of {self.nodes[node]['name']}"
        )
        if rows:
            kernel, args = reduce.cross_entropy_rows_kernel(
                dtype,
                self.nodes[labels]["type"].dtype,
                self.group,
                (storage, outer, inner),
                (label_storage, views.access(label_view)),
                losses,
                rows,
                classes,
            )
            global_size, local_size = reduce.launch_shape(
                rows, classes, self.group, self.profile.max_work_item_sizes[0]
            )
            self.launch(kernel, args, global_size, local_size, [node], {losses})
        addend = self._addend(node, ())
        addend_access = None if addend is None else (addend[0], views.access(addend[1]))
        count = max(rows, 1) if op.reduction == "mean" else self.a.divisor.get(node)
        kernel, args = reduce.reduce_kernel(
            "sum",
            dtype,
            self.group,
            (
                losses,
                views.access(View((), (), 0)),
                views.access(views.contiguous((rows,))),
            ),
            out,
            1,
            rows,
            count,
            addend_access,
        )
        global_size, local_size = reduce.launch_shape(
            1, rows, self.group, self.profile.max_work_item_sizes[0]
        )
        self.launch(
            kernel,
            args,
            global_size,
            local_size,
            self._covered(node),
            {out[0]},
            self._addend_in_place(addend, out),
        )

    def _bn_views(self, node: int, operand: int) -> tuple[Any, Access, Access]:
        storage, view = self.resolve(operand)
        reduced = (0,) + tuple(range(2, len(view.shape)))
        outer, inner, _, _ = self._split(view, reduced)
        return storage, outer, inner

    def _per_feature(self, operand: int) -> tuple[Any, Access]:
        storage, view = self.resolve(operand)
        return storage, views.access(view)

    def _bn_stats(self, node: int, x: int, mean: int, var: int, dy: int | None) -> Any:
        op = self.nodes[node]["op"]
        key = (x, mean, var, dy, op.momentum, op.eps, op.training)
        if key in self._stats_cache:
            return self._stats_cache[key]
        ttype = self.nodes[x]["type"]
        features = ttype.shape[1]
        count = ttype.size // max(features, 1)
        stats = self.scratch(
            (features * batchnorm.STATS,),
            ttype.dtype,
            f"batch-norm statistics of {self.nodes[node]['name']}",
        )
        kernel, args = batchnorm.stats_kernel(
            ttype.dtype,
            self.group,
            op.training,
            op.momentum,
            op.eps,
            self._bn_views(node, x),
            None if dy is None else self._bn_views(node, dy),
            self._per_feature(mean),
            self._per_feature(var),
            stats,
            features,
            count,
        )
        global_size, local_size = reduce.launch_shape(
            features, count, self.group, self.profile.max_work_item_sizes[0]
        )
        self.launch(kernel, args, global_size, local_size, [node], {stats})
        self._stats_cache[key] = stats
        return stats

    def _bn_layout(self, x: int) -> tuple[int, int, int]:
        shape = self.nodes[x]["type"].shape
        inner = int(np.prod(shape[2:], dtype=np.int64))
        return int(np.prod(shape, dtype=np.int64)), shape[1], inner

    def _batch_norm(self, node: int) -> None:
        x, gamma, beta, mean, var = self.a.operands[node]
        n, features, inner = self._bn_layout(x)
        if n == 0:
            return
        stats = self._bn_stats(node, x, mean, var, None)
        out = self.output_offset(node)
        storage, view = self.resolve(x)
        kernel, args = batchnorm.apply_kernel(
            self.nodes[node]["type"].dtype,
            (storage, views.access(view)),
            self._per_feature(gamma),
            self._per_feature(beta),
            stats,
            out,
            n,
            features,
            inner,
        )
        global_size, local_size = self.elementwise_sizes(n)
        self.launch(kernel, args, global_size, local_size, [node], {out[0]})

    def _batch_norm_grad(self, node: int) -> None:
        op = self.nodes[node]["op"]
        x, gamma, mean, var, dy = self.a.operands[node]
        n, features, inner = self._bn_layout(x)
        dtype = self.nodes[node]["type"].dtype
        out = self.output_offset(node)
        if n == 0 and op.wrt == "x":
            return
        stats = self._bn_stats(node, x, mean, var, dy)
        count = n // max(features, 1)
        if op.wrt == "x":
            x_storage, x_view = self.resolve(x)
            dy_storage, dy_view = self.resolve(dy)
            kernel, args = batchnorm.grad_x_kernel(
                dtype,
                op.training,
                op.momentum,
                (x_storage, views.access(x_view)),
                (dy_storage, views.access(dy_view)),
                self._per_feature(gamma),
                stats,
                out,
                n,
                features,
                inner,
                count,
            )
            global_size, local_size = self.elementwise_sizes(n)
        else:
            kernel, args = batchnorm.grad_feature_kernel(
                dtype,
                op.wrt,
                op.training,
                op.momentum,
                self._per_feature(gamma),
                stats,
                out,
                features,
                count,
            )
            global_size, local_size = self.elementwise_sizes(features)
        self.launch(kernel, args, global_size, local_size, [node], {out[0]})

    def _scatter_add(self, node: int) -> None:
        op = self.nodes[node]["op"]
        indices, values = self.a.operands[node]
        dtype = self.nodes[node]["type"].dtype
        index_storage, index_view = self.resolve(indices)
        value_storage, value_view = self.resolve(values)
        positions = index_view.size
        width = int(np.prod(value_view.shape[len(index_view.shape) :], dtype=np.int64))
        out = self.output_offset(node)
        if op.rows * width == 0:
            return
        name = self.nodes[node]["name"]
        first = self.scratch((op.rows,), "int32", f"first positions of {name}")
        following = self.scratch(
            (max(positions, 1),), "int32", f"next positions of {name}"
        )
        index_dtype = self.nodes[indices]["type"].dtype
        index_access = (index_storage, views.access(index_view))
        kernel, args = scatter.links_kernel(
            index_dtype, index_access, first, following, op.rows, positions
        )
        global_size, local_size = self.elementwise_sizes(op.rows + positions)
        self.launch(kernel, args, global_size, local_size, [node], {first, following})
        kernel, args = scatter.sum_kernel(
            dtype,
            (value_storage, views.access(value_view)),
            first,
            following,
            out,
            op.rows,
            width,
        )
        global_size, local_size = self.elementwise_sizes(op.rows * width)
        self.launch(kernel, args, global_size, local_size, [node], {out[0]})

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
