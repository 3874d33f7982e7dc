"""Random graphs of the core ops: gradients and OpenCL values match references.

Hypothesis draws graphs from ``graph_strategies.graph_recipes()``. On
NumPy in float64, the gradient of sum(output * w) for fixed random w
matches central finite differences. On OpenCL, every output and gradient
matches the NumPy backend's in the same dtype. The "ci" profile in
conftest.py fixes the examples; run pytest with
``--hypothesis-show-statistics`` to see the op families, shapes and
broadcasting cases that the examples covered.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from graph_recipe import (
    ALL_OPS,
    FAMILIES,
    BuiltGraph,
    GraphRecipe,
    InputSpec,
    Step,
    build_graph,
    draw_feeds,
    kink_margin,
)
from graph_strategies import LARGE, graph_recipes
from hypothesis import assume, event, given
from hypothesis import strategies as st
from numeric_checks import (
    FLOAT32_ATOL,
    FLOAT64_ATOL,
    GRADIENT_RTOL,
    assert_close,
    central_difference,
)
from opencl_support import opencl_backend

import lightnet_graph as lg

# Finite differences and gradient comparisons need every relu operand and
# every max runner-up at least this far from the kink.
KINK_MARGIN = 1e-3
OPENCL_TOLERANCES = {
    "float32": (1e-4, FLOAT32_ATOL),
    "float64": (1e-10, FLOAT64_ATOL),
}


def _report(recipe: GraphRecipe) -> None:
    for feature in sorted(recipe.features()):
        event(feature)
    for op in sorted(recipe.ops()):
        event(f"op: {op}")


@given(recipe=graph_recipes())
def test_gradient_matches_finite_differences(recipe: GraphRecipe) -> None:
    _report(recipe)
    built = build_graph(recipe, "float64")
    feeds = draw_feeds(recipe, "float64")
    assume(kink_margin(built, feeds) >= KINK_MARGIN)
    program = lg.compile(built.outputs, loss=built.loss, wrt=built.float_inputs)
    computed = program.run(feeds)
    loss_only = lg.compile(loss=built.loss, wrt=[])
    for tensor in built.float_inputs:

        def loss_at(value: np.ndarray, name: str = tensor.name) -> float:
            return loss_only.run({**feeds, name: value})["loss"]

        assert_close(
            computed[f"grad/{tensor.name}"],
            central_difference(loss_at, feeds[tensor.name]),
            rtol=GRADIENT_RTOL,
            atol=FLOAT64_ATOL,
            name=f"grad/{tensor.name}",
        )


def _runs_float64(backend: object) -> bool:
    graph = lg.Graph("fp64-probe", dtype="float64")
    try:
        lg.compile(graph.input("x", (1,)) * 2.0, backend=backend)
    except lg.DTypeError:
        return False
    return True


@pytest.fixture(scope="module")
def opencl() -> tuple[object, list[str]]:
    """Return the OpenCL backend and the dtypes its device runs.

    Skips without a usable OpenCL device, or fails when
    LIGHTNET_REQUIRE_OPENCL=1 (see opencl_support).
    """
    backend = opencl_backend()
    dtypes = ["float32", "float64"] if _runs_float64(backend) else ["float32"]
    return backend, dtypes


# The OpenCL comparison also draws large sizes, which the finite-difference
# check cannot afford.
OPENCL_RECIPES = st.one_of(graph_recipes(), graph_recipes(sizes=LARGE))


def _assert_opencl_matches_numpy(
    backend: object, built: BuiltGraph, feeds: dict[str, np.ndarray], dtype: str
) -> None:
    wrt = built.float_inputs
    expected = lg.compile(built.outputs, loss=built.loss, wrt=wrt).run(feeds)
    program = lg.compile(built.outputs, loss=built.loss, wrt=wrt, backend=backend)
    actual = program.run(feeds)
    rtol, atol = OPENCL_TOLERANCES[dtype]
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert_close(actual[name], value, rtol=rtol, atol=atol, name=name)


@given(recipe=OPENCL_RECIPES, data=st.data())
def test_opencl_matches_numpy(
    opencl: tuple[object, list[str]], recipe: GraphRecipe, data: st.DataObject
) -> None:
    backend, dtypes = opencl
    dtype = data.draw(st.sampled_from(dtypes), label="dtype")
    event(f"dtype: {dtype}")
    _report(recipe)
    built = build_graph(recipe, dtype)
    feeds = draw_feeds(recipe, dtype)
    assume(kink_margin(built, feeds) >= KINK_MARGIN)
    _assert_opencl_matches_numpy(backend, built, feeds, dtype)


def _reduction(op: str, keepdims: bool) -> Step:
    return Step(op, (0,), (("axis", None), ("keepdims", keepdims)))


# Examples that test_opencl_matches_numpy found. In both, one value is read
# by elementwise ops of different sizes, which the OpenCL backend once fused
# into one kernel launched over the first op's elements only.
FOUND_ON_OPENCL = {
    # v2 = -v1 has one element and v4 = v1 / v3 has two.
    "sum-read-by-two-sizes": GraphRecipe(
        entries=(
            InputSpec(()),
            _reduction("sum", keepdims=False),
            Step("neg", (1,)),
            InputSpec((2,), 0.5, 2.0),
            Step("div", (1, 3)),
        ),
        shapes=((), (), (), (2,), (2,)),
        value_seed=0,
    ),
    # max's gradient divides dy by the count of ties (one element) and
    # multiplies the tie mask (13 elements) by the result.
    "max-keepdims-gradient": GraphRecipe(
        entries=(InputSpec((13,)), _reduction("max", keepdims=True)),
        shapes=((13,), (1,)),
        value_seed=0,
    ),
}


@pytest.mark.parametrize("name", sorted(FOUND_ON_OPENCL))
def test_opencl_found_example(opencl: tuple[object, list[str]], name: str) -> None:
    backend, dtypes = opencl
    recipe = FOUND_ON_OPENCL[name]
    for dtype in dtypes:
        built = build_graph(recipe, dtype)
        feeds = draw_feeds(recipe, dtype)
        assert kink_margin(built, feeds) >= KINK_MARGIN
        _assert_opencl_matches_numpy(backend, built, feeds, dtype)


def test_examples_cover_every_op() -> None:
    """The recipes of both property tests cover every op, family and case.

    Each strategy draws as many examples as the profile runs. Some ops come
    up in under 2% of one strategy's examples, so the check counts both.
    """
    ops: collections.Counter[str] = collections.Counter()
    features: collections.Counter[str] = collections.Counter()

    for strategy in (graph_recipes(), OPENCL_RECIPES):

        @given(recipe=strategy)
        def collect(recipe: GraphRecipe) -> None:
            ops.update(recipe.ops())
            features.update(recipe.features())

        collect()

    assert set(ALL_OPS) <= set(ops), sorted(set(ALL_OPS) - set(ops))
    for family in FAMILIES:
        assert features[f"family: {family}"] > 0, family
    for case in (
        "shape: size-1 axis",
        "shape: 0-d value",
        "shape: prime size 7",
        "shape: prime size 13",
        "shape: prime size 67",
        "shape: prime size 257",
        "broadcast: size-1 axes stretched",
        "broadcast: leading axes added",
        "broadcast: 0-d operand",
        "broadcast: matmul batch axes",
        "broadcast: broadcast_to",
        "leaf: constant",
        "leaf: constant fill",
    ):
        assert features[case] > 0, case
