"""Compiled gradients of every op case against central finite differences."""

import numpy as np
import pytest
from numeric_checks import assert_gradients_match, op_nodes, seed_for, weighted_sum
from op_cases import CASES

import lightnet_graph as lg
from lightnet_graph.errors import GradientError
from lightnet_graph.ops import REGISTRY

# stop_gradient is the identity in the forward pass, so finite differences
# see a gradient that the op withholds by design.
WITHOUT_FINITE_DIFFERENCES = {"stop_gradient"}

FINITE_DIFFERENCE_CASES = [case for case in CASES if case.finite_differences]
ZERO_GRADIENT_CASES = [case for case in CASES if case.zero_gradient]
INDEX_CASES = [case for case in CASES if any(o.is_index for o in case.operands)]


def case_id(case):
    return case.id


def declare_loss(case):
    tensors, feeds = case.declare("float64")
    output = case.build(*tensors)
    return tensors, feeds, output, weighted_sum(output, seed_for(case.id))


def test_gradient_cases_cover_registry():
    covered = {case.op for case in FINITE_DIFFERENCE_CASES} | WITHOUT_FINITE_DIFFERENCES
    missing = sorted(set(REGISTRY) - covered)
    assert not missing, f"ops without a gradient case in tests/op_cases.py: {missing}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_case_uses_its_op(case):
    tensors, _ = case.declare("float64")
    output = case.build(*tensors)
    assert case.op in {data["op"].name for data in op_nodes(output.graph)}


@pytest.mark.parametrize("case", FINITE_DIFFERENCE_CASES, ids=case_id)
def test_op_gradient_matches_finite_differences(case):
    tensors, feeds, _, loss = declare_loss(case)
    wrt = [t for t in tensors if t.dtype.kind == "f"]
    assert_gradients_match(loss, wrt, feeds, step=case.step)


@pytest.mark.parametrize("case", ZERO_GRADIENT_CASES, ids=case_id)
def test_op_gradient_is_exactly_zero(case):
    tensors, feeds, _, loss = declare_loss(case)
    wrt = [t for t in tensors if t.name in case.zero_gradient]
    program = lg.compile(loss=loss, wrt=wrt)
    values = program.run(**feeds)

    for tensor in wrt:
        gradient = values[f"grad/{tensor.name}"]
        assert gradient.shape == tensor.shape
        assert np.all(gradient == 0), f"grad/{tensor.name} = {gradient}"
        # The simplified program computes no backward op for it.
        node = program.outputs[f"grad/{tensor.name}"]
        assert program.graph.nx.nodes[node]["kind"] == "constant"


@pytest.mark.parametrize("case", INDEX_CASES, ids=case_id)
def test_index_operands_get_no_gradient(case):
    tensors, _, output, _ = declare_loss(case)
    graph = output.graph
    checked = 0
    for node, data in list(graph.nx.nodes(data=True)):
        if data["kind"] != "op" or data["op"].name != case.op:
            continue
        checked += 1
        value = graph.tensor(node)
        dy = lg.broadcast_to(graph.constant(1.0), value.shape)
        gradients = data["op"].gradient(value.inputs, value, dy)
        for operand, gradient in zip(value.inputs, gradients, strict=True):
            if operand.dtype.kind == "i":
                assert gradient is None, (
                    f"{case.op} returned a gradient for {operand.name}"
                )
    assert checked, f"the graph of {case.id} has no {case.op} node"


@pytest.mark.parametrize("case", INDEX_CASES, ids=case_id)
def test_gradient_of_index_operand_raises(case):
    tensors, _, _, loss = declare_loss(case)
    indices = next(t for t in tensors if t.dtype.kind == "i")
    with pytest.raises(GradientError, match="only float values have gradients"):
        lg.compile(loss=loss, wrt=[indices])
