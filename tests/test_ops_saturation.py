"""Saturating ops at extreme inputs: finite, exact limits and exactly zero gradients."""

import numpy as np
import pytest

import lightnet_graph as lg

DTYPES = ["float32", "float64"]
EXTREMES = [-1e4, 1e4]


def run_with_gradient(op, dtype, x_value, weights):
    graph = lg.Graph("saturation", dtype=dtype)
    x = graph.input("x", np.shape(x_value))
    y = op(x)
    loss = lg.sum(y * np.asarray(weights, dtype))
    program = lg.compile({"y": y}, loss=loss, wrt=[x])
    return program.run(x=np.asarray(x_value, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_saturates_exactly(dtype):
    values = run_with_gradient(lg.tanh, dtype, EXTREMES, [0.5, -2.0])
    assert values["y"].dtype == dtype
    assert values["y"].tolist() == [-1.0, 1.0]
    assert values["grad/x"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_saturates_exactly(dtype):
    values = run_with_gradient(lg.sigmoid, dtype, EXTREMES, [0.5, -2.0])
    assert values["y"].dtype == dtype
    assert values["y"].tolist() == [0.0, 1.0]
    assert values["grad/x"].tolist() == [0.0, 0.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_saturates_to_one_hot(dtype):
    logits = [[1e4, 0.0, -1e4], [-1e4, -1e4, 1e4]]
    weights = [[0.5, -2.0, 1.0], [3.0, 0.25, -1.0]]
    values = run_with_gradient(lg.softmax, dtype, logits, weights)
    assert values["y"].tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    assert values["grad/x"].tolist() == [[0.0] * 3] * 2


def cross_entropy(dtype, logits, label):
    graph = lg.Graph("cross_entropy", dtype=dtype)
    x = graph.input("logits", (1, len(logits)))
    labels = graph.input("labels", (1,), dtype="int64")
    loss = lg.softmax_cross_entropy(x, labels, "sum")
    program = lg.compile(loss=loss, wrt=[x])
    return program.run(logits=np.array([logits], dtype), labels=np.array([label]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "label, loss, gradient", [(0, 0.0, [0.0, 0.0]), (1, 2e4, [1.0, -1.0])]
)
def test_cross_entropy_saturates_exactly(dtype, label, loss, gradient):
    values = cross_entropy(dtype, EXTREMES[::-1], label)
    assert values["loss"].dtype == dtype
    assert values["loss"] == loss
    assert values["grad/logits"].tolist() == [gradient]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label", [0, 1])
def test_cross_entropy_equal_huge_logits_is_ln2(dtype, label):
    values = cross_entropy(dtype, [1e8, 1e8], label)
    ln2 = np.log(np.array(2.0, dtype))
    assert values["loss"].dtype == dtype
    assert abs(values["loss"] - ln2) <= np.spacing(ln2), (
        f"loss {values['loss']!r}, ln 2 = {ln2!r}"
    )
    expected = [0.5, 0.5]
    expected[label] -= 1.0
    assert values["grad/logits"].tolist() == [expected]
