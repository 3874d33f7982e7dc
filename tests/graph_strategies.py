"""Hypothesis strategies that draw random graph recipes of the core ops.

``graph_recipes()`` draws a :class:`~graph_recipe.GraphRecipe`. Every value
carries bounds that interval arithmetic derives from its operands' bounds,
and the bounds decide which ops may read it. log and sqrt read only values
bounded below by 0.25, and div divides only by values at least 0.5 away
from 0. tanh and sigmoid read only values within [-5, 5], and exp only
values up to 3. A value is scaled down by a power of two once a bound
exceeds 16 in magnitude. Kinks and ties depend on the drawn values, so
``graph_recipe.kink_margin`` measures them after the values are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from graph_recipe import FAMILIES, GraphRecipe, InputSpec, Step, to_index
from hypothesis import strategies as st


@dataclass(frozen=True)
class Sizes:
    """The axis sizes a strategy draws, and the most elements in one value."""

    dims: tuple[int, ...]
    max_size: int


# Size-1 axes broadcast, and 7 and 13 are primes that divide no work-group
# size. The finite-difference check runs the program twice per input
# element, so its values stay small.
SMALL = Sizes((1, 2, 3, 4, 7, 13), 48)
# 67 and 257 also exceed 64 and 256, common work-group sizes, so a kernel
# over such an axis runs more than one work-group or loop pass.
LARGE = Sizes((1, 2, 3, 7, 13, 67, 257), 1100)
# A value whose bound exceeds this in magnitude is scaled down.
MAX_BOUND = 16.0
MAX_STEPS = 6
# The strategy draws a group, then an op of it. The twelve elementwise ops
# form two of the six groups, so they take a third of the draws.
DRAW_GROUPS = (
    FAMILIES["elementwise"][:4],
    FAMILIES["elementwise"][4:],
    *(FAMILIES[family] for family in ("matrix", "reduction", "shape", "softmax")),
)


@dataclass(frozen=True)
class _Value:
    shape: tuple[int, ...]
    low: float
    high: float

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def magnitude(self) -> float:
        return max(abs(self.low), abs(self.high))


@dataclass
class _Draft:
    """A recipe under construction, whose ``values`` are None at label inputs."""

    draw: Callable
    sizes: Sizes
    entries: list[InputSpec | Step] = field(default_factory=list)
    values: list[_Value | None] = field(default_factory=list)
    shapes: list[tuple[int, ...]] = field(default_factory=list)

    def new_input(
        self, shape: tuple[int, ...], low: float = -2.0, high: float = 2.0
    ) -> int:
        """Add an input, or now and then a constant, with values in [low, high]."""
        # Hypothesis shrinks draws toward 0, so examples shrink to inputs.
        constant = self.draw(st.integers(0, 4)) == 4
        spec = InputSpec(shape, low, high, constant=constant)
        return self._add(spec, _Value(shape, low, high))

    def new_fill(self, shape: tuple[int, ...], value: float) -> int:
        spec = InputSpec(shape, value, value, constant=True)
        return self._add(spec, _Value(shape, value, value))

    def new_labels(self, shape: tuple[int, ...], classes: int) -> int:
        self.entries.append(InputSpec(shape, classes=classes))
        self.values.append(None)
        self.shapes.append(shape)
        return len(self.entries) - 1

    def add_step(
        self, op: str, operands: tuple[int, ...], value: _Value, **attrs: object
    ) -> int:
        index = self._add(Step(op, operands, tuple(sorted(attrs.items()))), value)
        if value.magnitude > MAX_BOUND:
            exponent = math.ceil(math.log2(value.magnitude / MAX_BOUND))
            factor = 2.0**-exponent
            scaled = _Value(value.shape, value.low * factor, value.high * factor)
            index = self._add(Step("scale", (index,), (("factor", factor),)), scaled)
        return index

    def _add(self, entry: InputSpec | Step, value: _Value) -> int:
        self.entries.append(entry)
        self.values.append(value)
        self.shapes.append(value.shape)
        return len(self.entries) - 1

    def pick(self, accept: Callable[[_Value], bool], fresh: Callable[[], int]) -> int:
        """Return an earlier value that ``accept`` takes, or ``fresh()``.

        The most recent values come first, so graphs shrink toward chains.
        """
        candidates = [
            i
            for i in reversed(range(len(self.values)))
            if self.values[i] is not None and accept(self.values[i])
        ]
        choice = self.draw(st.integers(0, len(candidates)))
        if choice == len(candidates):
            return fresh()
        return candidates[choice]

    def shape(
        self, min_rank: int = 0, max_rank: int = 3, cap: int | None = None
    ) -> tuple[int, ...]:
        cap = self.max_size if cap is None else cap
        rank = self.draw(st.integers(min_rank, max_rank))
        dims: list[int] = []
        for _ in range(rank):
            allowed = [d for d in self.sizes.dims if math.prod(dims) * d <= cap]
            dims.append(self.draw(st.sampled_from(allowed)))
        return tuple(dims)

    def dim(self, cap: int) -> int:
        allowed = [d for d in self.sizes.dims if d <= max(cap, 1)]
        return self.draw(st.sampled_from(allowed))

    @property
    def max_size(self) -> int:
        return self.sizes.max_size

    def recipe(self, value_seed: int) -> GraphRecipe:
        return GraphRecipe(tuple(self.entries), tuple(self.shapes), value_seed)


def _product(a: _Value, b: _Value) -> tuple[float, float]:
    ends = [x * y for x in (a.low, a.high) for y in (b.low, b.high)]
    return min(ends), max(ends)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        return None


def _fits(draft: _Draft, shape: tuple[int, ...] | None) -> bool:
    return shape is not None and math.prod(shape) <= draft.max_size


def _away_from_zero(value: _Value) -> bool:
    return value.low >= 0.5 or value.high <= -0.5


def _partner_shape(draft: _Draft, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Draw a shape that broadcasts with ``shape`` to at most max_size elements."""
    dropped = draft.draw(st.integers(0, len(shape)))
    result = math.prod(shape)
    partner = []
    for d in shape[dropped:]:
        if d == 1:
            stretched = draft.dim(draft.max_size // result)
            result *= stretched
            partner.append(stretched)
        else:
            partner.append(draft.draw(st.sampled_from([d, 1])))
    if dropped == 0 and result * 2 <= draft.max_size and draft.draw(st.booleans()):
        leading = draft.dim(draft.max_size // result)
        partner.insert(0, leading)
    return tuple(partner)


def _binary(draft: _Draft, op: str) -> None:
    a = draft.pick(lambda v: True, lambda: draft.new_input(draft.shape()))
    a_shape = draft.values[a].shape

    def accept(v: _Value) -> bool:
        divisor_ok = op != "div" or _away_from_zero(v)
        return divisor_ok and _fits(draft, _broadcast(a_shape, v.shape))

    def fresh() -> int:
        shape = _partner_shape(draft, a_shape)
        if draft.draw(st.integers(0, 4)) == 4:
            fills = [1.0, -1.0, 2.0] if op == "div" else [0.0, 1.0, -1.0, 2.0]
            return draft.new_fill(shape, draft.draw(st.sampled_from(fills)))
        if op != "div":
            return draft.new_input(shape)
        if draft.draw(st.booleans()):
            return draft.new_input(shape, -2.0, -0.5)
        return draft.new_input(shape, 0.5, 2.0)

    b = draft.pick(accept, fresh)
    if op != "div" and draft.draw(st.booleans()):
        a, b = b, a
    va, vb = draft.values[a], draft.values[b]
    shape = _broadcast(va.shape, vb.shape)
    if op == "add":
        low, high = va.low + vb.low, va.high + vb.high
    elif op == "sub":
        low, high = va.low - vb.high, va.high - vb.low
    elif op == "mul":
        low, high = _product(va, vb)
    else:
        low, high = _product(va, _Value(vb.shape, 1 / vb.high, 1 / vb.low))
    draft.add_step(op, (a, b), _Value(shape, low, high))


UNARY_DOMAIN: dict[str, Callable[[_Value], bool]] = {
    "exp": lambda v: v.high <= 3.0,
    "log": lambda v: v.low >= 0.25,
    "sqrt": lambda v: v.low >= 0.25,
    "tanh": lambda v: v.magnitude <= 5.0,
    "sigmoid": lambda v: v.magnitude <= 5.0,
}


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _unary(draft: _Draft, op: str) -> None:
    low, high = (0.5, 3.0) if op in ("log", "sqrt") else (-2.0, 2.0)
    x = draft.pick(
        UNARY_DOMAIN.get(op, lambda v: True),
        lambda: draft.new_input(draft.shape(), low, high),
    )
    v = draft.values[x]
    attrs = {}
    if op == "neg":
        bounds = (-v.high, -v.low)
    elif op == "exp":
        bounds = (math.exp(v.low), math.exp(v.high))
    elif op == "log":
        bounds = (math.log(v.low), math.log(v.high))
    elif op == "sqrt":
        bounds = (math.sqrt(v.low), math.sqrt(v.high))
    elif op == "relu":
        bounds = (max(v.low, 0.0), max(v.high, 0.0))
    elif op == "leaky_relu":
        alpha = draft.draw(st.sampled_from([0.01, 0.2]))
        attrs["alpha"] = alpha
        bounds = (min(v.low, alpha * v.low), max(v.high, alpha * v.high))
    elif op == "tanh":
        bounds = (math.tanh(v.low), math.tanh(v.high))
    else:
        bounds = (_sigmoid(v.low), _sigmoid(v.high))
    draft.add_step(op, (x,), _Value(v.shape, *bounds), **attrs)


def _matmul(draft: _Draft, op: str) -> None:
    """Multiply an earlier value, on either side, by a new input of matching shape."""
    right = draft.draw(st.booleans())
    known = draft.pick(
        lambda v: v.ndim >= 2, lambda: draft.new_input(draft.shape(2, 3))
    )
    shape = draft.values[known].shape
    batch = tuple(d if draft.draw(st.booleans()) else 1 for d in shape[:-2])
    # Either known is a (..., M, K) and the new input is b (..., K, N), or the
    # new input is a (..., M, K) and known is b. outer is the new N or M.
    inner = shape[-2] if right else shape[-1]
    outer = draft.dim(
        min(
            draft.max_size // (math.prod(shape) // inner),
            draft.max_size // (math.prod(batch) * inner),
        )
    )
    if right:
        a, b = draft.new_input(batch + (outer, inner)), known
    else:
        a, b = known, draft.new_input(batch + (inner, outer))
    va, vb = draft.values[a], draft.values[b]
    result = _broadcast(va.shape[:-2], vb.shape[:-2]) + (va.shape[-2], vb.shape[-1])
    low, high = _product(va, vb)
    draft.add_step("matmul", (a, b), _Value(result, inner * low, inner * high))


def _linear(draft: _Draft, op: str) -> None:
    with_bias = draft.draw(st.booleans())
    min_rank = 1 if with_bias else 2
    x = draft.pick(
        lambda v: v.ndim >= min_rank,
        lambda: draft.new_input(draft.shape(min_rank, 3)),
    )
    vx = draft.values[x]
    features = vx.shape[-1]
    rows = vx.size // features
    outputs = draft.dim(min(draft.max_size // rows, draft.max_size // features))
    w = draft.pick(
        lambda v: v.shape == (outputs, features),
        lambda: draft.new_input((outputs, features)),
    )
    low, high = _product(vx, draft.values[w])
    low, high = features * low, features * high
    operands = (x, w)
    if with_bias:
        b = draft.new_input((outputs,))
        low, high = low + draft.values[b].low, high + draft.values[b].high
        operands = (x, w, b)
    draft.add_step("linear", operands, _Value(vx.shape[:-1] + (outputs,), low, high))


def _axes(draft: _Draft, ndim: int) -> int | tuple[int, ...] | None:
    """Draw None, one axis or several, some of them negative."""
    if ndim == 0:
        return None
    kind = draft.draw(st.sampled_from(["all", "one", "several"]))
    if kind == "all":
        return None
    if kind == "one":
        return draft.draw(st.integers(-ndim, ndim - 1))
    chosen = draft.draw(
        st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)
    )
    return tuple(a - ndim if draft.draw(st.booleans()) else a for a in chosen)


def _reduction(draft: _Draft, op: str) -> None:
    x = draft.pick(lambda v: True, lambda: draft.new_input(draft.shape()))
    v = draft.values[x]
    axis = _axes(draft, v.ndim)
    keepdims = draft.draw(st.booleans())
    if axis is None:
        reduced = set(range(v.ndim))
    elif isinstance(axis, int):
        reduced = {axis % v.ndim}
    else:
        reduced = {a % v.ndim for a in axis}
    if keepdims:
        shape = tuple(1 if i in reduced else d for i, d in enumerate(v.shape))
    else:
        shape = tuple(d for i, d in enumerate(v.shape) if i not in reduced)
    count = math.prod(v.shape[i] for i in reduced)
    low, high = (count * v.low, count * v.high) if op == "sum" else (v.low, v.high)
    draft.add_step(op, (x,), _Value(shape, low, high), axis=axis, keepdims=keepdims)


def _transpose(draft: _Draft, op: str) -> None:
    x = draft.pick(lambda v: v.ndim >= 2, lambda: draft.new_input(draft.shape(2, 3)))
    v = draft.values[x]
    perm = draft.draw(st.none() | st.permutations(range(v.ndim)).map(tuple))
    shape = v.shape[::-1] if perm is None else tuple(v.shape[p] for p in perm)
    draft.add_step("transpose", (x,), _Value(shape, v.low, v.high), perm=perm)


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


def _reshape(draft: _Draft, op: str) -> None:
    x = draft.pick(lambda v: True, lambda: draft.new_input(draft.shape()))
    v = draft.values[x]
    factors = _prime_factors(v.size)
    rank = draft.draw(st.integers(1 if factors else 0, 4))
    dims = [1] * rank
    for factor in factors:
        dims[draft.draw(st.integers(0, rank - 1))] *= factor
    shape = tuple(dims)
    if shape == v.shape:
        # lg.reshape returns its operand for its own shape; add an axis.
        shape = (1,) + shape
    target = shape
    if rank and draft.draw(st.booleans()):
        unknown = draft.draw(st.integers(0, len(shape) - 1))
        target = shape[:unknown] + (-1,) + shape[unknown + 1 :]
    draft.add_step("reshape", (x,), _Value(shape, v.low, v.high), shape=target)


def _concat(draft: _Draft, op: str) -> None:
    x = draft.pick(
        lambda v: v.ndim >= 1 and v.size * 2 <= draft.max_size,
        lambda: draft.new_input(draft.shape(1, 3, draft.max_size // 2)),
    )
    v = draft.values[x]
    axis = draft.draw(st.integers(-v.ndim, v.ndim - 1))
    at = axis % v.ndim
    operands = [x]
    shape = list(v.shape)
    for _ in range(draft.draw(st.integers(1, 2))):
        rest = math.prod(shape) // shape[at]
        room = draft.max_size // rest - shape[at]
        if room < 1:
            break

        def accept(other: _Value, room: int = room) -> bool:
            same_elsewhere = other.ndim == v.ndim and all(
                a == b
                for i, (a, b) in enumerate(zip(other.shape, shape, strict=True))
                if i != at
            )
            return same_elsewhere and other.shape[at] <= room

        def fresh(room: int = room) -> int:
            size = draft.dim(room)
            return draft.new_input(tuple(shape[:at]) + (size,) + tuple(shape[at + 1 :]))

        other = draft.pick(accept, fresh)
        operands.append(other)
        shape[at] += draft.values[other].shape[at]
    low = min(draft.values[i].low for i in operands)
    high = max(draft.values[i].high for i in operands)
    draft.add_step(
        "concat", tuple(operands), _Value(tuple(shape), low, high), axis=axis
    )


def _index_item(draft: _Draft, size: int) -> int | tuple:
    """Draw an int, or a non-empty ("slice", start, stop, step) for one axis."""
    kind = draft.draw(st.sampled_from(["all", "int", "range"]))
    if kind == "all":
        return ("slice", None, None, None)
    if kind == "int":
        return draft.draw(st.integers(-size, size - 1))
    bound = st.none() | st.integers(-size - 1, size + 1)
    start, stop = draft.draw(bound), draft.draw(bound)
    step = draft.draw(st.sampled_from([1, -1, 2, -2, 3]))
    if not range(*slice(start, stop, step).indices(size)):
        start, stop = None, None
    return ("slice", start, stop, step)


def _slice(draft: _Draft, op: str) -> None:
    x = draft.pick(lambda v: v.ndim >= 1, lambda: draft.new_input(draft.shape(1, 3)))
    v = draft.values[x]
    items = [_index_item(draft, d) for d in v.shape]
    full = ("slice", None, None, None)
    leading = 0
    while leading < len(items) and items[leading] == full:
        leading += 1
    if leading and draft.draw(st.booleans()):
        items = ["..."] + items[leading:]
    index = tuple(items)
    shape = np.empty(v.shape)[to_index(index)].shape
    draft.add_step("slice", (x,), _Value(shape, v.low, v.high), index=index)


def _broadcast_to(draft: _Draft, op: str) -> None:
    x = draft.pick(
        lambda v: v.size * 2 <= draft.max_size,
        lambda: draft.new_input(draft.shape(0, 2, draft.max_size // 2)),
    )
    v = draft.values[x]
    size = v.size
    target = []
    for d in v.shape:
        if d == 1:
            d = draft.dim(draft.max_size // size)
            size *= d
        target.append(d)
    for _ in range(draft.draw(st.integers(0, 2))):
        if size * 2 > draft.max_size:
            break
        leading = draft.dim(draft.max_size // size)
        size *= leading
        target.insert(0, leading)
    if tuple(target) == v.shape:
        # lg.broadcast_to returns its operand for its own shape; add an axis.
        target.insert(0, 2)
    shape = tuple(target)
    draft.add_step("broadcast_to", (x,), _Value(shape, v.low, v.high), shape=shape)


def _softmax(draft: _Draft, op: str) -> None:
    x = draft.pick(lambda v: v.ndim >= 1, lambda: draft.new_input(draft.shape(1, 3)))
    v = draft.values[x]
    if op == "softmax":
        axis = draft.draw(st.integers(-v.ndim, v.ndim - 1))
        draft.add_step("softmax", (x,), _Value(v.shape, 0.0, 1.0), axis=axis)
        return
    classes = v.shape[-1]
    labels = draft.new_labels(v.shape[:-1], classes)
    reduction = draft.draw(st.sampled_from(["mean", "sum"]))
    # Each position's loss lies in [0, log C + (max - min of its logits)].
    high = math.log(classes) + v.high - v.low
    if reduction == "sum":
        high *= math.prod(v.shape[:-1])
    draft.add_step(
        "softmax_cross_entropy", (x, labels), _Value((), 0.0, high), reduction=reduction
    )


GENERATORS: dict[str, Callable[[_Draft, str], None]] = {
    **{op: _binary for op in ("add", "sub", "mul", "div")},
    **{
        op: _unary
        for op in ("neg", "exp", "log", "sqrt", "relu", "leaky_relu", "tanh", "sigmoid")
    },
    "matmul": _matmul,
    "linear": _linear,
    **{op: _reduction for op in ("sum", "mean", "max")},
    "transpose": _transpose,
    "reshape": _reshape,
    "concat": _concat,
    "slice": _slice,
    "broadcast_to": _broadcast_to,
    "softmax": _softmax,
    "softmax_cross_entropy": _softmax,
}


@st.composite
def graph_recipes(
    draw: Callable, max_steps: int = MAX_STEPS, sizes: Sizes = SMALL
) -> GraphRecipe:
    """Draw a recipe of 1 to ``max_steps`` ops (not counting scale steps)."""
    draft = _Draft(draw, sizes)
    for _ in range(draw(st.integers(1, max_steps))):
        group = draw(st.sampled_from(DRAW_GROUPS))
        op = draw(st.sampled_from(group))
        GENERATORS[op](draft, op)
    return draft.recipe(draw(st.integers(0, 2**32 - 1)))
