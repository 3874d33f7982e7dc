"""Bad models and bad input end in one clear error naming the value and the fix."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import lightnet_graph as lg
from lightnet_graph.errors import (
    DTypeError,
    GraphError,
    InputValueError,
    ShapeError,
    UnboundInputError,
    UnknownBackendError,
    UnknownOpError,
)


def _line_of(marker: str) -> int:
    source, start = inspect.getsourcelines(test_shape_mismatch_names_op_shapes_and_line)
    for offset, line in enumerate(source):
        if marker in line:
            return start + offset
    raise AssertionError(marker)


def test_shape_mismatch_names_op_shapes_and_line() -> None:
    g = lg.Graph("bad")
    x = g.input("x", (3, 4))
    w = g.parameter("w", (5, 2))
    with pytest.raises(ShapeError) as caught:
        lg.matmul(x, w)  # the mismatched line
    message = str(caught.value)
    assert message.startswith("matmul:")
    assert "(3, 4)" in message
    assert "(5, 2)" in message
    assert "must equal" in message
    assert f"test_errors.py:{_line_of('# the mismatched line')}" in message


def test_broadcast_mismatch_names_rule() -> None:
    g = lg.Graph("bad")
    a = g.input("a", (3, 4))
    b = g.input("b", (5,))
    with pytest.raises(ShapeError, match=r"add: shapes \(3, 4\) and \(5,\) do not broadcast"):
        a + b


def test_linear_bias_mismatch_names_expected_shape() -> None:
    g = lg.Graph("bad")
    x = g.input("x", (2, 4))
    w = g.parameter("w", (3, 4))
    b = g.parameter("b", (4,))
    with pytest.raises(ShapeError, match=r"bias shape \(4,\) must be \(3,\)"):
        lg.linear(x, w, b)


def test_dtype_mismatch_suggests_cast() -> None:
    g = lg.Graph("bad")
    a = g.input("a", (2,), dtype="float32")
    b = g.input("b", (2,), dtype="float64")
    with pytest.raises(DTypeError, match="cast"):
        a * b


def test_labels_must_be_integers() -> None:
    g = lg.Graph("bad")
    logits = g.input("logits", (2, 3))
    labels = g.input("labels", (2,))
    with pytest.raises(DTypeError, match="labels have dtype float32; use int32 or int64"):
        lg.softmax_cross_entropy(logits, labels)


def test_unbound_input_named_with_shape() -> None:
    g = lg.Graph("model")
    x = g.input("x", (2, 3))
    y = g.input("y", (2, 3))
    program = lg.compile(lg.sum(x * y))
    with pytest.raises(UnboundInputError) as caught:
        program.run(x=np.ones((2, 3), np.float32))
    message = str(caught.value)
    assert "input 'y' (float32[2, 3]) was given no value" in message
    assert "pass every input" in message


def test_wrong_input_shape_named() -> None:
    g = lg.Graph("model")
    x = g.input("x", (2, 3))
    program = lg.compile(lg.sum(x))
    with pytest.raises(InputValueError, match=r"input 'x' has shape \(3, 2\), expected \(2, 3\)"):
        program.run(x=np.ones((3, 2)))


def test_unknown_input_name_lists_inputs() -> None:
    g = lg.Graph("model")
    x = g.input("x", (2,))
    program = lg.compile(lg.sum(x))
    with pytest.raises(InputValueError, match="'z' is not an input of 'model'; its inputs are x"):
        program.run(x=np.ones(2), z=np.ones(2))


def test_label_out_of_range_names_value_and_op() -> None:
    g = lg.Graph("model")
    logits = g.input("logits", (2, 3))
    labels = g.input("labels", (2,), dtype="int64")
    program = lg.compile(lg.softmax_cross_entropy(logits, labels))
    with pytest.raises(InputValueError) as caught:
        program.run(logits=np.zeros((2, 3)), labels=np.array([0, 7]))
    message = str(caught.value)
    assert "label 7 at index (1,) is out of range for 3 classes" in message
    assert "softmax_cross_entropy" in message
    assert "test_errors.py" in message


def test_unknown_op_lists_registered_ops() -> None:
    with pytest.raises(UnknownOpError) as caught:
        lg.get_op("convolution")
    message = str(caught.value)
    assert "unknown op 'convolution'" in message
    assert "matmul" in message


def test_unknown_backend_lists_installed() -> None:
    g = lg.Graph("model")
    x = g.input("x", (2,))
    with pytest.raises(UnknownBackendError) as caught:
        lg.compile(lg.sum(x), backend="cuda")
    message = str(caught.value)
    assert "unknown backend 'cuda'" in message
    assert "numpy" in message


def test_cycle_is_named() -> None:
    g = lg.Graph("loop")
    x = g.input("x", (2,))
    a = lg.tanh(x)
    b = lg.exp(a)
    # Declaring ops never makes a cycle; edit the graph by hand to make one.
    g.nx.add_edge(b.node, a.node, key=1)
    with pytest.raises(GraphError) as caught:
        lg.compile(b)
    message = str(caught.value)
    assert "has a cycle" in message
    assert "tanh" in message
    assert "exp" in message


def test_mixing_graphs_is_rejected() -> None:
    x = lg.Graph("one").input("x", (2,))
    y = lg.Graph("two").input("y", (2,))
    with pytest.raises(GraphError, match="different graphs"):
        x + y


def test_duplicate_parameter_name_rejected() -> None:
    g = lg.Graph("model")
    g.parameter("w", (2,))
    with pytest.raises(GraphError, match="already has a value named 'w'"):
        g.parameter("w", (3,))


def test_set_parameters_checks_names_and_shapes() -> None:
    g = lg.Graph("model")
    x = g.input("x", (2,))
    w = g.parameter("w", (2,))
    program = lg.compile(lg.sum(x * w))
    with pytest.raises(InputValueError, match=r"parameter 'w' has shape \(3,\), expected \(2,\)"):
        program.set_parameters({"w": np.ones(3)})
    with pytest.raises(InputValueError, match="'v' is not a parameter"):
        program.set_parameters({"v": np.ones(2)})


def test_grad_of_non_scalar_asks_for_reduction() -> None:
    g = lg.Graph("model")
    x = g.input("x", (2,))
    with pytest.raises(ShapeError, match="reduce it to a scalar"):
        lg.grad(lg.tanh(x), [x])
