"""Checking compiled gradients against central finite differences.

Errors follow the project's tolerance convention: a compiled gradient ``a``
matches finite differences ``b`` when, over the sampled entries,
``||a - b||_2 <= rtol * ||b||_2 + atol * sqrt(n)``. When a parameter fails,
every op's gradient rule is checked on its own at the values the model
produced, which names the op whose rule is wrong.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .compiler import compile
from .graph import OP, Graph, Location, Tensor
from .interpreter import evaluate
from .models import Model
from .ops.base import Op

logger = logging.getLogger(__name__)

# Per dtype: (finite-difference step, rtol, atol). Central differences in
# float32 carry rounding noise near 1e-4 relative, so its rtol is loose;
# gradient checks proper use float64.
DEFAULTS = {
    np.dtype("float64"): (1e-6, 1e-6, 1e-9),
    np.dtype("float32"): (1e-2, 2e-2, 1e-6),
}


@dataclass(frozen=True)
class Check:
    """The outcome of comparing one gradient with finite differences."""

    name: str
    shape: tuple[int, ...]
    samples: int
    error: float  # ||a - b|| / ||b||, or ||a - b|| when b is zero
    passed: bool
    op: str = ""
    location: Location | None = None


@dataclass
class Report:
    """Every parameter's check, and the op checks run after a failure."""

    dtype: np.dtype
    rtol: float
    parameters: list[Check] = field(default_factory=list)
    ops: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.parameters) and all(
            c.passed for c in self.ops
        )

    @property
    def max_error(self) -> float:
        return max((c.error for c in self.parameters), default=0.0)


def compare(
    computed: np.ndarray, reference: np.ndarray, rtol: float, atol: float
) -> tuple[float, bool]:
    """Return (relative error, passed) under the per-tensor norm convention."""
    computed = np.asarray(computed, np.float64).ravel()
    reference = np.asarray(reference, np.float64).ravel()
    diff = float(np.linalg.norm(computed - reference))
    scale = float(np.linalg.norm(reference))
    passed = diff <= rtol * scale + atol * math.sqrt(max(reference.size, 1))
    error = diff / scale if scale > 0 else diff
    return error, bool(passed and math.isfinite(diff))


def gradcheck(
    model: Model,
    samples: int = 16,
    seed: int = 0,
    rtol: float | None = None,
    backend: str = "numpy",
    check_numerics: bool = False,
) -> Report:
    """Check the gradient of ``model.loss`` for every parameter of its graph.

    With ``check_numerics``, a NaN or Inf raises NumericsError naming the
    op that produced it.
    """
    graph = model.graph
    eps, default_rtol, atol = DEFAULTS[graph.dtype]
    rtol = default_rtol if rtol is None else rtol
    rng = np.random.default_rng(seed)
    feeds = model.make_feeds(rng)

    program = compile(loss=model.loss, backend=backend, check_numerics=check_numerics)
    forward = compile({"loss": model.loss}, backend=backend)
    states = program.get_states()
    gradients = program.run(feeds)

    def loss_at(name: str, values: np.ndarray) -> float:
        forward.set_parameters({name: values}, strict=False)
        forward.set_states(states)
        return float(forward.run(feeds)["loss"])

    report = Report(graph.dtype, rtol)
    base = program.get_parameters()
    for name, value in base.items():
        picked = rng.choice(value.size, size=min(samples, value.size), replace=False)
        numeric = np.empty(picked.size)
        for i, flat_index in enumerate(picked):
            shifted = value.copy()
            shifted.flat[flat_index] = value.flat[flat_index] + eps
            plus = loss_at(name, shifted)
            shifted.flat[flat_index] = value.flat[flat_index] - eps
            minus = loss_at(name, shifted)
            numeric[i] = (plus - minus) / (2 * eps)
        forward.set_parameters({name: value}, strict=False)
        computed = gradients[f"grad/{name}"].ravel()[picked]
        error, passed = compare(computed, numeric, rtol, atol)
        report.parameters.append(Check(name, value.shape, picked.size, error, passed))

    if not report.passed:
        report.ops = check_op_rules(graph, model.loss, feeds, samples, seed, rtol)
    return report


def check_op_rules(
    graph: Graph,
    loss: Tensor,
    feeds: Mapping[str, np.ndarray],
    samples: int,
    seed: int,
    rtol: float,
) -> list[Check]:
    """Check each op's gradient rule alone at the values the model computes."""
    values = evaluate(graph, [loss.node], feeds)
    rng = np.random.default_rng(seed)
    checks = []
    for node in graph.topological_order(values):
        data = graph.nx.nodes[node]
        if data["kind"] != OP:
            continue
        operands = [values[n] for n in graph.operands(node)]
        error, passed = check_op(data["op"], operands, rng, samples, rtol)
        checks.append(
            Check(
                data["name"],
                data["type"].shape,
                samples,
                error,
                passed,
                op=data["op"].name,
                location=data["location"],
            )
        )
    return checks


def check_op(
    op: Op,
    operands: Sequence[np.ndarray],
    rng: np.random.Generator,
    samples: int = 16,
    rtol: float | None = None,
) -> tuple[float, bool]:
    """Compare one op's gradient rule with finite differences at ``operands``."""
    float_operands = [a for a in operands if a.dtype.kind == "f"]
    if not float_operands:
        return 0.0, True
    dtype = float_operands[0].dtype
    eps, default_rtol, atol = DEFAULTS[np.dtype(dtype)]
    rtol = default_rtol if rtol is None else rtol
    output = op.forward(*operands)
    weights = rng.standard_normal(output.shape).astype(output.dtype)

    local = Graph(f"check_{op.name}", dtype=dtype)
    leaves = [local.input(f"x{i}", a.shape, a.dtype) for i, a in enumerate(operands)]
    out_type = op.infer(*(leaf.type for leaf in leaves))
    out = local.add_op(op, leaves, out_type)
    wrt = [leaf for leaf in leaves if leaf.dtype.kind == "f"]
    program = compile(loss=(out * local.constant(weights)).sum(), wrt=wrt)
    computed = program.run(
        {leaf.name: a for leaf, a in zip(leaves, operands, strict=True)}
    )

    all_computed, all_numeric = [], []
    for position, (leaf, array) in enumerate(zip(leaves, operands, strict=True)):
        if leaf.dtype.kind != "f":
            continue
        picked = rng.choice(array.size, size=min(samples, array.size), replace=False)
        for flat_index in picked:
            shifted = [a.copy() for a in operands]
            shifted[position].flat[flat_index] += eps
            plus = float(np.sum(op.forward(*shifted) * weights))
            shifted[position].flat[flat_index] -= 2 * eps
            minus = float(np.sum(op.forward(*shifted) * weights))
            all_numeric.append((plus - minus) / (2 * eps))
            all_computed.append(computed[f"grad/{leaf.name}"].flat[flat_index])
    return compare(np.array(all_computed), np.array(all_numeric), rtol, atol)
