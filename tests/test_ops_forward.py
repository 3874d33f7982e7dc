"""Forward values of every op case against NumPy expressions written in the tests."""

import pytest
from numeric_checks import assert_close, tolerances
from op_cases import CASES

import lightnet_graph as lg


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_op_forward_matches_reference(case, dtype):
    tensors, feeds = case.declare(dtype)
    output = case.build(*tensors)
    assert output.dtype == dtype

    values = lg.compile({"y": output}).run(**feeds)

    rtol, atol = tolerances(dtype)
    assert values["y"].dtype == dtype
    assert_close(
        values["y"], case.reference_value(feeds), rtol=rtol, atol=atol, name=case.id
    )
