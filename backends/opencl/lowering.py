"""Lowering the nodes that are whole kernels: matmul, reductions, batch norm, scatter.

:class:`WholeKernels` is a part of the planner in :mod:`.plan`; its methods
use the planner's storages, views and launch list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import views
from .kernels import batchnorm, matmul, pointwise, reduce, scatter
from .kernels.matmul import Layout
from .views import Access, View


class WholeKernels:
    """Planner methods that emit the launches of one node each (a few for some)."""

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

    def _reduce_shape(self, outputs: int, reduced: int) -> tuple[tuple, tuple]:
        profile = self.profile
        return reduce.launch_shape(
            outputs,
            reduced,
            self.group,
            profile.max_work_item_sizes[0],
            profile.compute_units if profile.kind == "cpu" else None,
        )

    def _covered(self, node: int) -> list[int]:
        """Return the node and the ops it absorbed, for inspection."""
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
        """Return a matrix operand's contiguous axis, copying the operand if it has none."""
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
        global_size, local_size = self._reduce_shape(outputs, count)
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
        global_size, local_size = self._reduce_shape(rows, length)
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
            global_size, local_size = self._reduce_shape(rows, classes)
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
        global_size, local_size = self._reduce_shape(1, rows)
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
        global_size, local_size = self._reduce_shape(features, count)
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
