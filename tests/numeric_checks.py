"""Tolerances, the per-tensor closeness check and the finite-difference harness.

"a matches b to rtol" means ||a - b||_2 <= rtol * ||b||_2 + atol * sqrt(n)
for a tensor of n elements.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np

import lightnet_graph as lg
from lightnet_graph.graph import Graph, Tensor

GRADIENT_RTOL = 1e-6
FLOAT64_RTOL = 1e-12
FLOAT64_ATOL = 1e-9
FLOAT32_RTOL = 1e-6
FLOAT32_ATOL = 1e-6
FINITE_DIFFERENCE_STEP = 1e-6


def tolerances(dtype: object) -> tuple[float, float]:
    """Return (rtol, atol) for comparing forward values computed in ``dtype``."""
    if np.dtype(dtype) == np.float32:
        return FLOAT32_RTOL, FLOAT32_ATOL
    return FLOAT64_RTOL, FLOAT64_ATOL


def seed_for(text: str) -> int:
    """Return a seed that depends only on ``text``, so each case draws fixed values."""
    return zlib.crc32(text.encode())


def assert_close(
    actual: object, expected: object, *, rtol: float, atol: float, name: str = "value"
) -> None:
    """Assert that ``actual`` matches ``expected`` to rtol in the per-tensor norm."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (
        f"{name}: shape {actual.shape}, expected {expected.shape}"
    )
    difference = actual.astype(np.float64) - expected.astype(np.float64)
    error = float(np.linalg.norm(difference.ravel()))
    bound = rtol * float(np.linalg.norm(expected.ravel())) + atol * np.sqrt(
        expected.size
    )
    worst = ()
    if difference.size:
        worst = np.unravel_index(np.argmax(np.abs(difference)), difference.shape)
    assert error <= bound, (
        f"{name}: ||a - b|| = {error:.3e} exceeds {bound:.3e} (rtol {rtol}, "
        f"atol {atol}). The largest difference is at {worst}: {actual[worst]!r} "
        f"vs {expected[worst]!r}"
    )


def central_difference(
    function: Callable[[np.ndarray], float],
    value: np.ndarray,
    step: float = FINITE_DIFFERENCE_STEP,
) -> np.ndarray:
    """Estimate the gradient of a scalar ``function`` at ``value`` by central differences."""
    gradient = np.zeros(value.shape)
    for index in np.ndindex(value.shape):
        plus = value.copy()
        minus = value.copy()
        plus[index] += step
        minus[index] -= step
        # The rounded points may lie a little closer or further than 2 * step apart.
        width = float(plus[index]) - float(minus[index])
        gradient[index] = (float(function(plus)) - float(function(minus))) / width
    return gradient


def weighted_sum(output: Tensor, seed: int) -> Tensor:
    """Declare the loss sum(output * w) for fixed random weights w.

    Unlike sum(output), it gives every element of the output its own weight
    in the gradient.
    """
    weights = np.random.default_rng(seed).standard_normal(output.shape)
    return lg.sum(output * weights.astype(output.dtype))


def compile_gradients(
    loss: Tensor, wrt: Sequence[Tensor], feeds: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Compile ``loss`` with gradients for ``wrt`` and return them keyed by value name."""
    values = lg.compile(loss=loss, wrt=list(wrt)).run(**feeds)
    return {t.name: values[f"grad/{t.name}"] for t in wrt}


def numeric_gradients(
    loss: Tensor,
    wrt: Sequence[Tensor],
    feeds: dict[str, np.ndarray],
    step: float = FINITE_DIFFERENCE_STEP,
) -> dict[str, np.ndarray]:
    """Estimate the gradient of the compiled ``loss`` for each input in ``wrt``."""
    program = lg.compile(loss=loss, wrt=[])
    gradients = {}
    for tensor in wrt:

        def evaluate(value: np.ndarray, name: str = tensor.name) -> float:
            return program.run(**{**feeds, name: value})["loss"]

        gradients[tensor.name] = central_difference(evaluate, feeds[tensor.name], step)
    return gradients


def assert_gradients_match(
    loss: Tensor,
    wrt: Sequence[Tensor],
    feeds: dict[str, np.ndarray],
    step: float = FINITE_DIFFERENCE_STEP,
) -> None:
    """Assert that compiled gradients of ``loss`` match central differences (float64)."""
    analytic = compile_gradients(loss, wrt, feeds)
    numeric = numeric_gradients(loss, wrt, feeds, step)
    for tensor in wrt:
        assert analytic[tensor.name].shape == tensor.shape, (
            f"grad/{tensor.name} has shape {analytic[tensor.name].shape}, "
            f"expected the operand's shape {tensor.shape}"
        )
        assert_close(
            analytic[tensor.name],
            numeric[tensor.name],
            rtol=GRADIENT_RTOL,
            atol=FLOAT64_ATOL,
            name=f"grad/{tensor.name}",
        )


def op_nodes(graph: Graph) -> list[dict]:
    """Return the node data of every op node of ``graph``."""
    return [data for _, data in graph.nx.nodes(data=True) if data["kind"] == "op"]
